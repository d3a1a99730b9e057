"""launch/offline_wheels.py: what a target without network lacks, and the pip download of it.

The walk is checked on a hand-made requirement graph (markers, extras, the target's
Python), and the command on a small pyproject against a fake `pip freeze` file, with
every expected line written out here. Nothing is downloaded (no --run).
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "launch", "offline_wheels.py")


@pytest.fixture(scope="module")
def ow():
    spec = importlib.util.spec_from_file_location("offline_wheels", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GRAPH = {
    "a": ["d>=2", "e; extra == 'y'"],
    "b": ["f", "g; extra == 'x'"],
    "d": [],
    "f": ["h; sys_platform == 'win32'"],
    "g": [],
    "e": [],
}
HERE = {"a": "1.5", "b": "1.0", "d": "2.1", "e": "1", "f": "1", "g": "1"}


def walk(ow, python_version):
    from packaging.requirements import Requirement

    roots = [
        Requirement(r) for r in ("a>=1", "b[x]; python_version >= '3.12'", "c; os_name == 'nt'")
    ]
    env = ow.target_environment(python_version, "manylinux2014_x86_64")
    return ow.closure(roots, env, HERE, GRAPH.get)


def test_closure_follows_markers_extras_and_the_target_python(ow):
    assert sorted(walk(ow, "3.11")) == ["a", "d"]  # b needs 3.12; c is Windows; e extra y
    needed = walk(ow, "3.12")
    assert sorted(needed) == ["a", "b", "d", "f", "g"]  # b[x] brings g; h is Windows only
    assert needed["b"].extras == {"x"}
    assert needed["d"].requirers == ["a"] and str(needed["d"].specifier) == ">=2"
    assert needed["a"].here == "1.5"


def test_lacking_by_name_and_by_version(ow):
    needed = walk(ow, "3.12")
    have = ow.read_freeze("# a comment\na==1.2\nd==1.9\nf @ file:///wheels/f.whl\n-e git+x#egg=g\n")
    assert have == {"a": "1.2", "d": "1.9", "f": None, "g": None}
    rows = [(e.name, why) for e, why in ow.lacking(needed, have)]
    assert rows == [("b", "missing"), ("d", "has 1.9, needs >=2")]


def test_freeze_line_it_cannot_read(ow):
    with pytest.raises(ValueError, match="cannot read the freeze line 'numpy>=2'"):
        ow.read_freeze("numpy>=2\n")


def run(*args):
    command = [sys.executable, SCRIPT, *args]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


def test_command_on_a_fake_freeze_file(tmp_path):
    """rich -> markdown-it-py -> mdurl, rich -> pygments (as installed here); numpy pinned
    above anything that exists; the target has pygments and an old markdown-it-py."""
    version = importlib.metadata.version
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\nname = "demo"\nversion = "1"\n'
        'dependencies = ["rich", "numpy>=99"]\n'
        '[project.optional-dependencies]\nextra = ["six"]\n'
        "[build-system]\nrequires = []\n"
    )
    have = tmp_path / "have.txt"
    have.write_text("pygments==2.13.0\nmarkdown-it-py==1.0.0\nnumpy==2.1.0\nsix==1.0\n")
    result = run(f"--pyproject={pyproject}", f"--have={have}", "--dest=/tmp/w", "--extras=extra")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"6 distributions needed (Python 3.{sys.version_info.minor}, x86_64); " + (
        f"4 lacking in {have}"
    )
    md, mdurl, rich = (version(p) for p in ("markdown-it-py", "mdurl", "rich"))
    assert lines[3:7] == [
        f"| markdown-it-py | has 1.0.0, needs >=2.2.0 | =={md} | rich |",
        f"| mdurl | missing | =={mdurl} | markdown-it-py |",
        "| numpy | has 2.1.0, needs >=99 | >=99 (+ deps) | pyproject.toml |",
        f"| rich | missing | =={rich} | pyproject.toml |",
    ]
    py = sys.executable
    assert lines[7] == (
        f"{py} -m pip download --dest /tmp/w --no-deps markdown-it-py=={md} mdurl=={mdurl} "
        f"rich=={rich}"
    )
    assert lines[8] == f"{py} -m pip download --dest /tmp/w 'numpy>=99'"
    assert (
        lines[9] == 'then on the target: pip install --no-index --find-links=/tmp/w -e ".[extra]"'
    )


def test_for_another_platform(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "demo"\nversion = "1"\ndependencies = ["six>=99"]\n')
    have = tmp_path / "have.txt"
    have.write_text("")
    args = ["--platform=manylinux2014_aarch64", "--python_version=3.12"]
    result = run(f"--pyproject={pyproject}", f"--have={have}", *args)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"1 distributions needed (Python 3.12, aarch64); 1 lacking in {have}"
    assert lines[4] == (
        f"{sys.executable} -m pip download --dest wheels --platform manylinux2014_aarch64 "
        "--python-version 3.12 --only-binary=:all: 'six>=99'"
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--have=/nonexistent/have.txt"], "error: [Errno 2] No such file or directory"),
        (["--extras=cuda99"], "error: --extras cuda99: pyproject has tpu, cuda, cuda12,"),
        (["--python_version=three"], "error: --python_version=three: give the target's Python"),
        (["--nosuchflag"], "error: Unknown command line flag 'nosuchflag'"),
        (["stray"], "error: unexpected arguments stray; flags start with --."),
    ],
)
def test_bad_input_is_one_line(args, message):
    result = run(*args)
    assert result.returncode == 1
    assert result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
