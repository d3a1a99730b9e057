#!/usr/bin/env bash
# Cloud TPU VM slice for learned_resize: create, install, run on every host, watch, stop, delete.
#
#   launch/tpu_pod.sh [options] COMMAND... [-- learned_resize.main flags]
#
# Commands (run in the order given):
#   create   create the TPU VM slice
#   install  copy this checkout to every worker, install it there (launch/install.sh in a
#            Python 3.11 venv), plus jax[tpu] at the same JAX version and gcsfs for gs://
#   check    every host prints its CPU count and runs `python -m learned_resize.tools.doctor`:
#            joins jax.distributed, prints its process index, devices, memory, versions,
#            data dir, datasets and VGG weights, each OK or the command that fixes it
#   run      start `python -m learned_resize.main FLAGS --distributed=on` on every worker in
#            the background (FLAGS: what follows `--`, default
#            --config=configs/imagenet_resnet50.py --workdir=$WORKDIR); the output goes to
#            ~/learned_resize_run.log on each worker
#   logs     follow worker 0's log (process 0 prints the progress; Ctrl-C stops watching only)
#   stop     SIGTERM on every host: the run saves a checkpoint at an agreed step and exits;
#            `run` with the same flags resumes it
#   delete   delete the slice
#
# Options (or the environment variables in brackets):
#   --name NAME          TPU name [TPU_NAME]                   default learned-resize
#   --zone ZONE          zone [ZONE]                           default us-central2-b (has v4)
#   --project PROJECT    project [PROJECT]                     default: gcloud's configured one
#   --accelerator TYPE   accelerator type [ACCELERATOR_TYPE]   default v4-32 (16 chips, 4 hosts)
#   --version VERSION    TPU software version [RUNTIME_VERSION] default tpu-ubuntu2204-base
#   --workdir DIR        run's workdir, best a gs:// path all hosts share [WORKDIR]
#   --spot               create a Spot slice (cheaper, preemptible: `run` again resumes)
#   --dry-run            print every command instead of running it
#
# Example (docs/pods.md):
#   launch/tpu_pod.sh create install check
#   launch/tpu_pod.sh --workdir=gs://BUCKET/r50 run -- --config=configs/imagenet_resnet50.py \
#       --workdir=gs://BUCKET/r50 --config.data.data_dir=gs://BUCKET/tensorflow_datasets
#   launch/tpu_pod.sh logs
#   launch/tpu_pod.sh delete
set -euo pipefail
cd "$(dirname "$0")/.."

NAME="${TPU_NAME:-learned-resize}"
ZONE="${ZONE:-us-central2-b}"
PROJECT="${PROJECT:-}"
ACCELERATOR="${ACCELERATOR_TYPE:-v4-32}"
VERSION="${RUNTIME_VERSION:-tpu-ubuntu2204-base}"
WORKDIR="${WORKDIR:-}"
SPOT=0
DRY_RUN=0
COMMANDS=()
MAIN_FLAGS=()

# Paths on every worker.
REMOTE_DIR='~/learned_resize'
REMOTE_VENV='~/lr-venv'
REMOTE_LOG='~/learned_resize_run.log'
REMOTE_PID='~/learned_resize_run.pid'
ARCHIVE="${TMPDIR:-/tmp}/learned_resize_src.tar.gz"

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
}

die() {
  echo "tpu_pod.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --name=*) NAME="${1#*=}" ;;
    --name) NAME="${2:?--name needs a value}"; shift ;;
    --zone=*) ZONE="${1#*=}" ;;
    --zone) ZONE="${2:?--zone needs a value}"; shift ;;
    --project=*) PROJECT="${1#*=}" ;;
    --project) PROJECT="${2:?--project needs a value}"; shift ;;
    --accelerator=*) ACCELERATOR="${1#*=}" ;;
    --accelerator) ACCELERATOR="${2:?--accelerator needs a value}"; shift ;;
    --version=*) VERSION="${1#*=}" ;;
    --version) VERSION="${2:?--version needs a value}"; shift ;;
    --workdir=*) WORKDIR="${1#*=}" ;;
    --workdir) WORKDIR="${2:?--workdir needs a value}"; shift ;;
    --spot) SPOT=1 ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) usage; exit 0 ;;
    --) shift; MAIN_FLAGS=("$@"); break ;;
    create|install|check|run|logs|stop|delete) COMMANDS+=("$1") ;;
    *) die "unknown argument '$1'; see launch/tpu_pod.sh --help for the commands and options." ;;
  esac
  shift
done
[ ${#COMMANDS[@]} -gt 0 ] || die "no command given; use one or more of create install check run logs stop delete (see --help)."
if [[ " ${COMMANDS[*]} " == *" run "* ]] && [ ${#MAIN_FLAGS[@]} -eq 0 ] && [ -z "$WORKDIR" ]; then
  die "run needs a workdir: pass --workdir=gs://BUCKET/DIR (or the main flags after --)."
fi

# Shell-quotes one word for display and for the remote shell (single quotes, safe for any text).
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,~-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Prints a command, then runs it unless --dry-run.
step() {
  local out="" word
  for word in "$@"; do out+="$(quote "$word") "; done
  echo "${out% }"
  if [ "$DRY_RUN" = 0 ]; then "$@"; fi
}

GCLOUD_FLAGS=(--zone="$ZONE")
[ -n "$PROJECT" ] && GCLOUD_FLAGS+=(--project="$PROJECT")
TPU=(gcloud compute tpus tpu-vm)

# Runs a shell command line on the workers given (all, or an index).
on_workers() {
  local workers="$1" command="$2"
  step "${TPU[@]}" ssh "$NAME" "${GCLOUD_FLAGS[@]}" --worker="$workers" --command="$command"
}

do_create() {
  local extra=()
  [ "$SPOT" = 1 ] && extra+=(--spot)
  step "${TPU[@]}" create "$NAME" "${GCLOUD_FLAGS[@]}" --accelerator-type="$ACCELERATOR" \
    --version="$VERSION" "${extra[@]}"
}

do_install() {
  # The working tree (uncommitted edits included), without git history or local workdirs.
  step tar --exclude-vcs --exclude=./workdirs --exclude=__pycache__ --exclude='*.egg-info' -czf "$ARCHIVE" .
  step "${TPU[@]}" scp "$ARCHIVE" "$NAME:~/learned_resize_src.tar.gz" "${GCLOUD_FLAGS[@]}" \
    --worker=all
  # Ubuntu 22.04 ships Python 3.10; the package needs 3.11+. jax[tpu] is pinned to the
  # JAX version install.sh resolved, so libtpu matches jaxlib. gcsfs lets Orbax (etils.epath,
  # without TensorFlow) use gs:// paths; google-cloud-storage does the same for tensorboardX.
  local py="$REMOTE_VENV/bin/python"
  local parts=(
    "sudo apt-get update -qq"
    "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv"
    "{ [ -x $py ] || python3.11 -m venv $REMOTE_VENV; }"
    "mkdir -p $REMOTE_DIR"
    "tar -xzf ~/learned_resize_src.tar.gz -C $REMOTE_DIR"
    "cd $REMOTE_DIR"
    "PYTHON=$py bash launch/install.sh"
    "$py -m pip install -q -U \"jax[tpu]==\$($py -c 'import jax; print(jax.__version__)')\" gcsfs google-cloud-storage"
  )
  local joined
  joined="$(printf ' && %s' "${parts[@]}")"
  on_workers all "${joined# && }"
}

do_check() {
  # Also the host's CPU count: it bounds the input pipeline (config.data.num_workers).
  on_workers all "echo \$(hostname): \$(nproc) CPUs; cd $REMOTE_DIR && $REMOTE_VENV/bin/python -m learned_resize.tools.doctor --distributed=on"
}

do_run() {
  local flags=("${MAIN_FLAGS[@]}")
  if [ ${#flags[@]} -eq 0 ]; then
    flags=(--config=configs/imagenet_resnet50.py --workdir="$WORKDIR")
  fi
  # GCE TPU VMs list their workers in the metadata server, which --distributed=auto reads
  # too (learned_resize/runtime/distributed.py); =on makes a failed detection an error instead of
  # one separate run per host.
  [[ " ${flags[*]} " == *" --distributed"* ]] || flags+=(--distributed=on)
  local line="" word
  for word in "${flags[@]}"; do line+=" $(quote "$word")"; done
  # setsid + nohup with every stream redirected: the run outlives the ssh session.
  on_workers all "cd $REMOTE_DIR && setsid nohup $REMOTE_VENV/bin/python -m learned_resize.main$line > $REMOTE_LOG 2>&1 < /dev/null & echo \$! > $REMOTE_PID"
}

do_logs() {
  on_workers 0 "tail -n 200 -F $REMOTE_LOG"
}

do_stop() {
  on_workers all "kill -TERM \$(cat $REMOTE_PID)"
}

do_delete() {
  step "${TPU[@]}" delete "$NAME" "${GCLOUD_FLAGS[@]}" --quiet
}

for command in "${COMMANDS[@]}"; do
  echo "# $command"
  "do_$command"
done
