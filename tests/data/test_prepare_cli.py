"""`python -m learned_resize.data.prepare`: a mistake is one `error:` line, exit status 1."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _prepare(*args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    cmd = [sys.executable, "-m", "learned_resize.data.prepare", *args]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


# (arguments, fragment of the one `error:` line). {tmp}: a scratch dir.
BAD = [
    (["--manual_dir={tmp}/no_such_dir"], "--manual_dir={tmp}/no_such_dir is not a directory"),
    (["--manual_dir={tmp}/empty_source"], "or set --manual_dir to a directory holding"),
    (["--dataset=ava"], "or point --manual_dir at it"),
    (["--dataset=imagenet2012"], "flag --dataset=imagenet2012: value should be one of"),
    (["--nosuchflag"], "Unknown command line flag 'nosuchflag'"),
    (["extra"], "unexpected arguments extra; flags start with --."),
]


@pytest.mark.parametrize("args, fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_error_line(tmp_path, args, fragment):
    (tmp_path / "empty_source").mkdir()
    (tmp_path / "data").mkdir()
    out = _prepare(f"--data_dir={tmp_path}/data", *(a.format(tmp=tmp_path) for a in args))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(lines) == 1, out.stderr[-2000:]
    assert lines[0].startswith("error: ") and fragment.format(tmp=tmp_path) in lines[0]
    assert "config.data.manual_dir" not in lines[0]  # this command's flag, not a config key
    assert not (tmp_path / "data" / "fashion_mnist_local" / "1.0.0" / "dataset_info.json").exists()
