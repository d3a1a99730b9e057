#!/usr/bin/env bash
# One machine with NVIDIA GPUs: check it, then train on its GPUs with the GPU settings.
#
#   launch/gpu_host.sh [options] COMMAND... [-- learned_resize.main flags]
#
# Commands (run in the order given):
#   check   python -m learned_resize.tools.doctor: platform, GPUs and their memory, jax/CUDA
#           versions, allocator, data dir and datasets, VGG weights (OK or the fix)
#   run     python -m learned_resize.main FLAGS in the foreground (FLAGS: what follows
#           `--`). One process drives every visible GPU; launch/slurm.sbatch starts this
#           script once per SLURM task instead, and main.py finds the other tasks. When
#           stopped by SIGTERM (preemption) it saves a checkpoint and exits with status
#           75: run the same command again to resume.
#
# Options (or the environment variables in brackets):
#   --gpus LIST        GPUs to use, e.g. 0,1,2,3 (sets CUDA_VISIBLE_DEVICES; default all)
#   --python PATH      Python with learned_resize installed [PYTHON]      default python
#   --cache-dir DIR    compilation and autotuning cache [XLA_CACHE_DIR]
#                      default ~/.cache/learned_resize/xla
#   --dry-run          print the environment and each command instead of running them
#
# GPU settings exported (docs/gpu_clusters.md says why; yours come after ours
# in XLA_FLAGS, so they win):
#   XLA_FLAGS                  --xla_gpu_enable_latency_hiding_scheduler=true
#                              --xla_gpu_per_fusion_autotune_cache_dir=DIR/autotune
#   JAX_COMPILATION_CACHE_DIR  DIR/jax
#
# Example:
#   launch/gpu_host.sh check run -- --config=configs/imagenet_resnet50.py --workdir=/data/r50 \
#       --config.data.data_dir=/data/tensorflow_datasets
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python}"
CACHE_DIR="${XLA_CACHE_DIR:-$HOME/.cache/learned_resize/xla}"
GPUS=""
DRY_RUN=0
COMMANDS=()
MAIN_FLAGS=()

die() {
  echo "gpu_host.sh: $*" >&2
  exit 2
}

while [ $# -gt 0 ]; do
  case "$1" in
    --gpus=*) GPUS="${1#*=}" ;;
    --gpus) GPUS="${2:?--gpus needs a value}"; shift ;;
    --python=*) PYTHON="${1#*=}" ;;
    --python) PYTHON="${2:?--python needs a value}"; shift ;;
    --cache-dir=*) CACHE_DIR="${1#*=}" ;;
    --cache-dir) CACHE_DIR="${2:?--cache-dir needs a value}"; shift ;;
    --dry-run) DRY_RUN=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    --) shift; MAIN_FLAGS=("$@"); break ;;
    check|run) COMMANDS+=("$1") ;;
    *) die "unknown argument '$1'; see launch/gpu_host.sh --help for the commands and options." ;;
  esac
  shift
done
[ ${#COMMANDS[@]} -gt 0 ] || die "no command given; use check, run or both (see --help)."
if [[ " ${COMMANDS[*]} " == *" run "* ]]; then
  [ "${COMMANDS[-1]}" = run ] || die "run must come last: it replaces this script's process."
  [[ " ${MAIN_FLAGS[*]} " == *" --workdir"* ]] || die "run needs main flags with a --workdir after --."
fi
[[ "$GPUS" =~ ^[0-9,]*$ ]] || die "--gpus=$GPUS is not a list of GPU indices like 0,1,2,3."

# Prints a variable assignment or command in shell syntax, then applies it unless --dry-run.
show() {
  printf '%q ' "$@" | sed 's/ $//'
  echo
}
setenv() {
  show export "$1=$2"
  export "$1=$2"
}

setenv XLA_FLAGS "--xla_gpu_enable_latency_hiding_scheduler=true --xla_gpu_per_fusion_autotune_cache_dir=$CACHE_DIR/autotune${XLA_FLAGS:+ $XLA_FLAGS}"
setenv JAX_COMPILATION_CACHE_DIR "$CACHE_DIR/jax"
[ -z "$GPUS" ] || setenv CUDA_VISIBLE_DEVICES "$GPUS"
[ "$DRY_RUN" = 1 ] || mkdir -p "$CACHE_DIR/autotune" "$CACHE_DIR/jax"

for command in "${COMMANDS[@]}"; do
  echo "# $command"
  case "$command" in
    check) cmd=("$PYTHON" -m learned_resize.tools.doctor) ;;
    run) cmd=("$PYTHON" -m learned_resize.main "${MAIN_FLAGS[@]}") ;;
  esac
  show "${cmd[@]}"
  [ "$DRY_RUN" = 1 ] && continue
  # run: exec, so SIGTERM from a scheduler or `kill` reaches Python itself.
  if [ "$command" = run ]; then exec "${cmd[@]}"; fi
  "${cmd[@]}"
done
