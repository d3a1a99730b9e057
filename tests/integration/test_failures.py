"""What a pod's life throws at a run: divergence, failed and full disks, torn checkpoints,
another model's workdir, SIGTERM at start-up and during the final eval.

Each test drives the real CLI in a subprocess and reads its exit status and stderr.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from learned_resize.runtime import errors

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", **extra)
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


def run(small_fmnist, workdir, *extra, **env):
    return subprocess.run(
        command(small_fmnist, workdir, *extra),
        cwd=REPO,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return lines[0]


def saved_states(workdir) -> dict:
    directory = workdir / "checkpoints"
    out = {}
    with ocp.StandardCheckpointer() as ckpt:
        for step in ocp.utils.checkpoint_steps(directory):
            out[step] = ckpt.restore(directory / str(step) / "state")
    return out


@pytest.fixture(scope="module")
def finished(small_fmnist, tmp_path_factory):
    """A finished 6-step tiny run (checkpoints at 2, 4, 6) to copy from."""
    workdir = tmp_path_factory.mktemp("finished") / "run"
    result = run(small_fmnist, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def copy_of(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "run")
    return tmp_path / "run"


@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_every_good_checkpoint(small_fmnist, finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    before = saved_states(workdir)
    result = run(
        small_fmnist,
        workdir,
        "--config.num_train_steps=14",
        "--config.optim.learning_rate=1e30",
        "--config.keep_checkpoints=3",
    )
    assert result.returncode == errors.EXIT_USER_ERROR
    line = one_error_line(result)
    assert "diverged" in line and "by step 8" in line and "is step 6" in line, line
    after = saved_states(workdir)
    assert sorted(after) == sorted(before) == [2, 4, 6]  # nothing rotated out, nothing added
    for step, state in after.items():
        for leaf in [x for x in _leaves(state) if np.issubdtype(x.dtype, np.floating)]:
            assert np.all(np.isfinite(leaf)), step
    json.loads((workdir / "results.json").read_text())  # still the finished run's, valid JSON


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


@pytest.mark.slow
def test_torn_newest_checkpoint_is_skipped_and_kept(small_fmnist, finished, tmp_path):
    workdir = copy_of(finished, tmp_path)
    newest = workdir / "checkpoints" / "6" / "state"
    for path in newest.rglob("*"):
        if path.is_file() and path.stat().st_size > 0:
            path.write_bytes(b"\xff" * 7)  # garbage where tensorstore/orbax expect data
    result = run(small_fmnist, workdir, "--config.num_train_steps=8")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()  # one line for the skipped step
    assert len(lines) == 1 and lines[0].startswith("warning: checkpoint "), result.stderr[-3000:]
    assert "checkpoints/6 is unreadable" in lines[0]
    assert "Resumed from checkpoint at step 4" in result.stdout
    assert (workdir / "checkpoints" / "6.unreadable").is_dir()  # kept, not deleted
    assert json.loads((workdir / "results.json").read_text())["step"] == 8

    # Eval-only on a run whose every checkpoint is torn: one sentence.
    for step_dir in (workdir / "checkpoints").iterdir():
        for path in step_dir.rglob("*"):
            if path.is_file() and path.stat().st_size > 0 and "state" in path.parts:
                path.write_bytes(b"\xff" * 7)
    result = run(small_fmnist, workdir, "--mode=eval")
    assert result.returncode == errors.EXIT_USER_ERROR
    assert "unreadable" in one_error_line(result)


@pytest.mark.slow
def test_another_models_workdir_is_refused_before_anything_is_written(
    small_fmnist, finished, tmp_path
):
    workdir = copy_of(finished, tmp_path)
    listing = {p: p.stat().st_mtime_ns for p in workdir.rglob("*")}
    config_json = (workdir / "config.json").read_bytes()
    result = run(small_fmnist, workdir, "--config.resizer.num_filters=8")
    assert result.returncode == errors.EXIT_USER_ERROR
    assert "different model" in one_error_line(result)
    assert (workdir / "config.json").read_bytes() == config_json
    assert {p: p.stat().st_mtime_ns for p in workdir.rglob("*")} == listing
    assert "Compiling" not in result.stdout


@pytest.mark.slow
def test_checkpoint_directory_gone_bad_mid_run_ends_in_seconds(small_fmnist, tmp_path):
    """The checkpoint directory replaced by a file mid-run: one sentence, exit 1, no hang."""
    workdir = tmp_path / "run"
    proc = subprocess.Popen(
        command(
            small_fmnist,
            workdir,
            "--config.num_train_steps=100000",
            "--config.checkpoint_every_steps=4",
            "--config.log_every_steps=1",
        ),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if "] step 5/" in line:  # a checkpoint (step 4) exists; the next is at step 8
            # Moved away in one rename (a save may be writing into it right now).
            (workdir / "checkpoints").rename(workdir / "checkpoints.gone")
            (workdir / "checkpoints").write_text("not a directory")
            broken = time.monotonic()
            break
    proc.stdout.read()
    status = proc.wait(timeout=120)
    assert time.monotonic() - broken < 60
    assert status == errors.EXIT_USER_ERROR
    stderr = proc.stderr.read()
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: could not write a checkpoint"), stderr


def _mount_tmpfs(path, size) -> bool:
    path.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return result.returncode == 0


@pytest.mark.slow
def test_disk_full_ends_in_one_sentence_and_resumes_once_space_is_back(
    small_fmnist, finished, tmp_path
):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("needs root to mount a small tmpfs (a full disk) here")
    try:
        workdir = disk / "run"
        full = run(
            small_fmnist, workdir, "--config.num_train_steps=40", "--config.keep_checkpoints=20"
        )
        assert full.returncode == errors.EXIT_USER_ERROR
        # Whichever write meets the full disk first, the asynchronous checkpoint's or the
        # metrics' flush at a checkpoint, the run ends in one line saying what to do.
        line = one_error_line(full)
        assert "could not write" in line and "free space" in line, line
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        resumed = run(
            small_fmnist, workdir, "--config.num_train_steps=40", "--config.keep_checkpoints=20"
        )
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "Resumed from checkpoint at step" in resumed.stdout
        straight = run(small_fmnist, tmp_path / "straight", "--config.num_train_steps=40")
        assert straight.returncode == 0, straight.stderr[-3000:]
        a = saved_states(workdir)[40]
        b = saved_states(tmp_path / "straight")[40]
        for x, y in zip(_leaves(a), _leaves(b), strict=True):
            np.testing.assert_array_equal(x, y)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["start-up", "final eval"])
def test_sigterm_at_start_up_and_during_final_eval_exits_preempted(small_fmnist, tmp_path, when):
    workdir = tmp_path / "run"
    if when == "start-up":
        proc = subprocess.Popen(
            command(small_fmnist, workdir),
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(3.0)  # imports / config / data: before the first step
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=300)
        status = proc.returncode
    else:
        result = run(small_fmnist, workdir, LEARNED_RESIZE_TERM_AT="run:eval")
        status, out = result.returncode, result.stdout + result.stderr
    assert status == errors.EXIT_PREEMPTED, out[-3000:]
    assert not (workdir / "results.json").exists()
    again = run(small_fmnist, workdir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((workdir / "results.json").read_text())["step"] == 6
    if when == "final eval":
        assert "Resumed from checkpoint at step 6" in again.stdout


def _warnings_and_errors(text: str) -> list[str]:
    """Lines that are not the trainer's own INFO progress (absl 'I' lines, the results
    table, the final metrics JSON)."""
    return [
        line
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(("I", "|", "{", "}", " "))
        or line.startswith(("Traceback", "  File"))
    ]


@pytest.mark.slow
def test_truncated_newest_checkpoint_costs_one_warning_line(small_fmnist, finished, tmp_path):
    """Truncated array data: Orbax and tensorstore fail per array, asynchronously; the
    user sees one line (it was thousands of asyncio tracebacks)."""
    workdir = copy_of(finished, tmp_path)
    for path in (workdir / "checkpoints" / "6" / "state").rglob("*"):
        if path.is_file() and "d" in path.parent.name:  # the OCDBT data files
            with open(path, "r+b") as f:
                f.truncate(10)
    evaluated = run(small_fmnist, workdir, "--mode=eval")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    lines = evaluated.stderr.strip().splitlines()
    assert len(lines) == 1, evaluated.stderr[-3000:]
    assert lines[0].startswith(f"warning: checkpoint {workdir}/checkpoints/6 is unreadable (")
    assert lines[0].endswith("trying the previous step.")
    assert _warnings_and_errors(evaluated.stdout) == []
    assert len(evaluated.stdout.splitlines()) < 20
    assert "at step 4" in evaluated.stdout

    resumed = run(small_fmnist, workdir, "--config.num_train_steps=8")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    lines = resumed.stderr.strip().splitlines()
    assert len(lines) == 1 and f"kept as {workdir}/checkpoints/6.unreadable" in lines[0], lines
    assert _warnings_and_errors(resumed.stdout) == []
    assert "Resumed from checkpoint at step 4" in resumed.stdout


def _bind_read_only(disk) -> bool:
    """A read-only bind mount over disk; the remount is tried a few times (it can fail
    with EBUSY for a moment while the run writes). False if the machine refuses it."""
    if subprocess.run(["mount", "--bind", str(disk), str(disk)], capture_output=True).returncode:
        return False
    for attempt in range(5):
        remount = ["mount", "-o", "remount,bind,ro", str(disk)]
        if subprocess.run(remount, capture_output=True).returncode == 0:
            return True
        time.sleep(0.2 * (attempt + 1))
    return False


def _mount(path, *options) -> bool:
    path.mkdir(exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(("size=64m", *options)), "tmpfs", str(path)],
        capture_output=True,
    )
    return result.returncode == 0


@pytest.mark.slow
def test_read_only_workdir_at_start_up_is_one_line(small_fmnist, tmp_path):
    disk = tmp_path / "disk"
    if not _mount(disk, "ro"):
        pytest.skip("needs root to mount a read-only tmpfs here")
    try:
        result = run(small_fmnist, disk / "run")
        assert result.returncode == errors.EXIT_USER_ERROR
        line = one_error_line(result)
        assert line.startswith(f"error: cannot write in --workdir={disk}/run (")
        assert "Read-only file system" in line, line
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_read_only_remount_mid_run_is_one_line(small_fmnist, tmp_path):
    disk = tmp_path / "disk"
    if not _mount(disk):
        pytest.skip("needs root to mount a tmpfs here")
    try:
        workdir = disk / "run"
        proc = subprocess.Popen(
            command(
                small_fmnist,
                workdir,
                "--config.num_train_steps=100000",
                "--config.checkpoint_every_steps=4",
                "--config.log_every_steps=1",
            ),
            cwd=REPO,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in proc.stdout:
            if "] step 5/" in line:  # a checkpoint (step 4) exists; the next is at step 8
                # Read-only from now on: a read-only bind mount over the disk (a plain
                # `remount,ro` is refused while the run has files open for writing; the
                # files already open stay writable, every new write fails).
                if not _bind_read_only(disk):
                    proc.kill()
                    proc.wait()
                    pytest.skip("this machine refused the read-only remount (mount(8) failed)")
                break
        out = proc.stdout.read()
        status = proc.wait(timeout=120)
        stderr = proc.stderr.read()
        assert status == errors.EXIT_USER_ERROR, stderr[-3000:]
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: could not write"), stderr[-3000:]
        assert "Read-only file system" in lines[0] and "run the same command again" in lines[0]
        assert _warnings_and_errors(out) == []
    finally:
        for _ in range(3):  # the bind mount, then the disk
            if subprocess.run(["umount", "-l", str(disk)], capture_output=True).returncode:
                break
