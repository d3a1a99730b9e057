"""One workdir, one writer (learned_resize/runtime/workdir_lock.py).

Two real `python -m learned_resize.main` processes on one workdir: the second is
refused in one line naming the first's host and pid, and writes nothing; the first,
stopped with SIGSTOP meanwhile, then ends (SIGTERM: exit 75) and removes its lock. A
lock left by a killed run (a dead pid) is taken over. The rules for other hosts
(heartbeat age) and for gs:// (write, read back) are checked in process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from learned_resize.runtime import errors, workdir_lock
from tests.helpers import gcs_emulator

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
gcs = gcs_emulator.fixture(scope="module")


def _env():
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    return env


def command(small_fmnist, workdir, *extra):
    source, data_dir, _ = small_fmnist
    return [
        sys.executable,
        "-m",
        "learned_resize.main",
        "--config=configs/tiny.py",
        f"--workdir={workdir}",
        f"--config.data.manual_dir={source}",
        f"--config.data.data_dir={data_dir}",
        *extra,
    ]


def run(small_fmnist, workdir, *extra):
    return subprocess.run(
        command(small_fmnist, workdir, *extra),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.slow
def test_second_trainer_is_refused_in_one_line_and_writes_nothing(small_fmnist, tmp_path):
    workdir = tmp_path / "run"
    first = subprocess.Popen(
        command(small_fmnist, workdir, "--config.num_train_steps=100000"),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in first.stdout:
            if "] step 2/" in line:  # training: the lock is held
                break
        first.send_signal(signal.SIGSTOP)
        lock = json.loads((workdir / "trainer.lock").read_text())
        assert lock["host"] == socket.gethostname() and lock["pid"] == first.pid
        listing = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")}

        second = run(small_fmnist, workdir, "--config.num_train_steps=100000")
        assert second.returncode == errors.EXIT_USER_ERROR
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr[-3000:]
        assert lines[0] == (
            f"error: {workdir} is in use by {lock['host']} pid {first.pid} since "
            f"{lock['started']}; wait for it or stop it, or give this run another --workdir "
            f"(if that run is gone for good, delete {workdir}/trainer.lock)."
        )
        assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in workdir.rglob("*")} == listing
    finally:
        first.send_signal(signal.SIGCONT)
        first.send_signal(signal.SIGTERM)
        first.stdout.read()
        status = first.wait(timeout=120)
    assert status == errors.EXIT_PREEMPTED, first.stderr.read()[-3000:]
    assert not (workdir / "trainer.lock").exists()  # released at the preempted exit


@pytest.mark.slow
def test_stale_lock_of_a_dead_process_is_taken_over(small_fmnist, tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    stale = {"host": socket.gethostname(), "pid": _dead_pid(), "started": "earlier"}
    (workdir / "trainer.lock").write_text(json.dumps(stale))
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Taking over the stale lock" in result.stdout + result.stderr
    assert json.loads((workdir / "results.json").read_text())["step"] == 6
    assert not (workdir / "trainer.lock").exists()


def _holder(**fields):
    return {"host": "other-host", "pid": 1, "started": "then", "heartbeat": time.time(), **fields}


def test_another_hosts_lock_is_stale_only_after_the_heartbeat_timeout(tmp_path):
    path = tmp_path / "trainer.lock"
    path.write_text(json.dumps(_holder()))
    with pytest.raises(errors.UserError, match="in use by other-host pid 1 since then"):
        with workdir_lock.held(tmp_path):
            pass
    path.write_text(json.dumps(_holder(heartbeat=time.time() - workdir_lock.STALE_SECONDS - 1)))
    with workdir_lock.held(tmp_path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert not path.exists()


def test_this_hosts_live_process_holds_it_and_an_error_releases_it(tmp_path):
    path = tmp_path / "trainer.lock"
    alive = {"host": socket.gethostname(), "pid": os.getppid(), "started": "then"}
    path.write_text(json.dumps(alive))
    with pytest.raises(errors.UserError, match=f"pid {os.getppid()} since then"):
        with workdir_lock.held(tmp_path):
            pass
    path.unlink()
    with pytest.raises(RuntimeError):
        with workdir_lock.held(tmp_path):
            raise RuntimeError("the run failed")
    assert not path.exists()


@pytest.mark.slow
def test_lock_on_gs(gcs, monkeypatch):
    monkeypatch.setattr(workdir_lock, "READ_BACK_SECONDS", 0.1)
    from etils import epath

    with gcs.applied():
        workdir = "gs://bucket/locked"
        path = epath.Path(workdir) / "trainer.lock"
        path.write_text(json.dumps(_holder()))
        with pytest.raises(errors.UserError, match="in use by other-host pid 1 since then"):
            with workdir_lock.held(workdir):
                pass
        assert json.loads(gcs.read_object("locked/trainer.lock"))["host"] == "other-host"
        path.unlink()
        with workdir_lock.held(workdir):
            lock = json.loads(gcs.read_object("locked/trainer.lock"))
            assert lock["pid"] == os.getpid() and lock["host"] == socket.gethostname()
        assert "locked/trainer.lock" not in gcs.list_objects("locked/")
