r"""Runs `python -m learned_resize.main` as N local processes that act as N hosts.

    python launch/local_multiprocess.py --num_processes=2 --devices_per_process=4 -- \
        --config=configs/tiny.py --workdir=/tmp/mh

Everything after `--` is passed to every process, followed by
`--coordinator_address=127.0.0.1:PORT --num_processes=N --process_id=I`, so the
processes meet through `jax.distributed.initialize()` exactly as the hosts of a pod
slice do. Each process sees M simulated CPU devices (`JAX_NUM_CPU_DEVICES`) and
talks to the others through gloo CPU collectives
(`JAX_CPU_COLLECTIVES_IMPLEMENTATION=gloo`), so the run is one mesh of N*M devices.
With N=1 no coordinator is passed and JAX is not initialised for several processes.

Process 0's output is streamed here; every process's output is also written to
`<log_dir>/process_<I>.log`. When a process fails, the others are killed (they
would wait forever in their next collective), the failed one's log tail is shown,
and the launcher exits with its status (128 + signal number for a signal).
SIGTERM or Ctrl-C to the launcher is forwarded as SIGTERM to every process, like
a preemption of every host: the run saves a checkpoint at a step all processes
agree on and exits; run the same command to resume. A second Ctrl-C kills them.

Fault injection for tests: `--process_env=1:LEARNED_RESIZE_KILL_AT_STEP=5` sets
an environment variable in process 1 only.

The dataset must be prepared before the launch (`bash launch/install.sh` does it for
Fashion-MNIST): N processes preparing it at once in one data_dir would race.
"""

import collections
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from absl import app, flags

_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 2, "N simulated hosts.")
_DEVICES_PER_PROCESS = flags.DEFINE_integer("devices_per_process", 4, "M CPU devices each.")
_PORT = flags.DEFINE_integer("port", 0, "Coordinator port (0: a free one).")
# --log_dir (per-process logs; default: a temp dir) is absl.logging's own flag, reused.
_PROCESS_ENV = flags.DEFINE_multi_string(
    "process_env", [], "I:KEY=VALUE: an environment variable for process I only (repeatable)."
)
_TIMEOUT = flags.DEFINE_float("timeout", None, "Kill all after this many seconds.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lines of a failed process's log shown when it is not process 0 (whose output is streamed).
_TAIL_LINES = 40


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(base: dict, devices: int, extra: dict | None = None) -> dict:
    """The environment of one simulated host: CPU only, `devices` devices, gloo collectives."""
    env = dict(base)
    # A device count in the parent's XLA_FLAGS (e.g. from the tests) would disagree with ours.
    flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", env.get("XLA_FLAGS", ""))
    env["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={devices}".strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_NUM_CPU_DEVICES"] = str(devices)
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONUNBUFFERED"] = "1"
    # `-m learned_resize.main` from any directory, installed or not.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH", "")) if p)
    env.update(extra or {})
    return env


def child_command(python: str, main_args: list, num_processes: int, process_id: int, port: int):
    cmd = [python, "-m", "learned_resize.main", *main_args]
    if num_processes > 1:
        cmd += [
            f"--coordinator_address=127.0.0.1:{port}",
            f"--num_processes={num_processes}",
            f"--process_id={process_id}",
        ]
    return cmd


def parse_process_env(values: list, num_processes: int) -> dict:
    """['1:KEY=VALUE', ...] -> {1: {'KEY': 'VALUE'}}."""
    out = collections.defaultdict(dict)
    for value in values:
        match = re.fullmatch(r"(\d+):([A-Za-z_][A-Za-z0-9_]*)=(.*)", value)
        if not match or int(match.group(1)) >= num_processes:
            raise ValueError(
                f"--process_env={value!r} is not I:KEY=VALUE with I < {num_processes}; "
                "write e.g. --process_env=1:LEARNED_RESIZE_KILL_AT_STEP=5."
            )
        out[int(match.group(1))][match.group(2)] = match.group(3)
    return out


def _die_with_parent():
    """Children get SIGKILL if the launcher dies, so no orphan waits on a dead coordinator."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # Not Linux: orphans are possible, nothing else changes.
        pass


def _stream(pipe, log_file, out):
    for line in pipe:
        log_file.write(line)
        log_file.flush()
        out.write(line)
        out.flush()


def _tail(path: str, lines: int) -> str:
    with open(path, errors="replace") as f:
        return "".join(collections.deque(f, maxlen=lines))


def _describe(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def _start(main_args, num_processes, devices_per_process, port, log_dir, process_env, python, out):
    """Starts the processes; process 0's output is streamed to `out` and its log."""
    procs, logs, threads = [], [], []
    for i in range(num_processes):
        log_path = os.path.join(log_dir, f"process_{i}.log")
        log_file = open(log_path, "w")
        logs.append(log_path)
        proc = subprocess.Popen(
            child_command(python, main_args, num_processes, i, port),
            env=child_env(os.environ, devices_per_process, process_env.get(i)),
            stdout=subprocess.PIPE if i == 0 else log_file,
            stderr=subprocess.STDOUT,
            text=True,
            # Own session: a terminal's Ctrl-C reaches only the launcher, which forwards SIGTERM.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if i == 0:
            thread = threading.Thread(target=_stream, args=(proc.stdout, log_file, out))
            thread.start()
            threads.append(thread)
        procs.append(proc)
    return procs, logs, threads


def _wait(procs, timeout, out):
    """Waits for every process; at the first failure (or the timeout) kills the rest.
    Returns the index of the failed process, -1 for the timeout, None if all succeeded."""
    deadline = None if timeout is None else time.monotonic() + timeout
    failed = None
    while any(p.poll() is None for p in procs):
        failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
        if failed is not None:
            break
        if deadline is not None and time.monotonic() > deadline:
            print(f"[launcher] timed out after {timeout:.0f} s.", file=out, flush=True)
            failed = -1
            break
        time.sleep(0.2)
    if failed is None:
        failed = next((i for i, p in enumerate(procs) if p.returncode != 0), None)
    if failed is not None:
        for p in procs:  # Survivors wait on collectives with the dead one forever.
            if p.poll() is None:
                p.kill()
    for p in procs:
        p.wait()
    return failed


def launch(
    main_args: list,
    *,
    num_processes: int,
    devices_per_process: int,
    port: int = 0,
    log_dir: str | None = None,
    process_env: dict | None = None,
    python: str = sys.executable,
    timeout: float | None = None,
    out=sys.stdout,
) -> int:
    """Starts the processes, waits for them, returns the launcher's exit status."""
    if num_processes < 1 or devices_per_process < 1:
        raise ValueError(
            f"--num_processes={num_processes} and --devices_per_process={devices_per_process} "
            "must both be at least 1."
        )
    port = port or free_port()
    log_dir = log_dir or tempfile.mkdtemp(prefix="learned_resize_mp_")
    os.makedirs(log_dir, exist_ok=True)
    process_env = process_env or {}
    print(
        f"[launcher] {num_processes} processes x {devices_per_process} CPU devices, coordinator "
        f"127.0.0.1:{port}, logs in {log_dir}",
        file=out,
        flush=True,
    )
    procs, logs, threads = _start(
        main_args, num_processes, devices_per_process, port, log_dir, process_env, python, out
    )

    interrupts = []

    def forward(signum, _):
        interrupts.append(signum)
        sig = signal.SIGKILL if len(interrupts) > 1 else signal.SIGTERM
        print(f"[launcher] got {signal.Signals(signum).name}: sending {sig.name} to all.", file=out)
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed = _wait(procs, timeout, out)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for thread in threads:
            thread.join()
    if failed is None:
        print("[launcher] all processes finished.", file=out, flush=True)
        return 0
    if failed == -1:
        return 124
    code = procs[failed].returncode
    print(
        f"[launcher] process {failed} failed with {_describe(code)}; stopped the others.",
        file=out,
        flush=True,
    )
    if failed != 0:
        print(f"[launcher] last lines of {logs[failed]}:", file=out)
        print(_tail(logs[failed], _TAIL_LINES), file=out, flush=True)
    return 128 - code if code < 0 else code


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def main(argv) -> int:
    # absl stops parsing at `--` and hands over what follows: learned_resize.main's flags.
    main_args = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    if not main_args or len(argv) - 1 != len(main_args):
        return _error(
            "give the launcher's own flags, then `--` and the learned_resize.main flags, e.g. "
            "--num_processes=2 -- --config=configs/tiny.py --workdir=/tmp/mh"
        )
    try:
        process_env = parse_process_env(_PROCESS_ENV.value, _NUM_PROCESSES.value)
        return launch(
            main_args,
            num_processes=_NUM_PROCESSES.value,
            devices_per_process=_DEVICES_PER_PROCESS.value,
            port=_PORT.value,
            log_dir=flags.FLAGS.log_dir or None,
            process_env=process_env,
            timeout=_TIMEOUT.value,
        )
    except ValueError as e:
        return _error(str(e))


if __name__ == "__main__":
    app.run(main)
