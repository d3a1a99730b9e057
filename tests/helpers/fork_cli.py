"""Runs `python -m MODULE ARGS` once per argv, each in a process of its own, fast.

Imports the libraries the command-line tools import once, then forks one child per
case; the child runs MODULE as `python -m MODULE ARGS` would (`runpy`, as __main__,
flag parsing included) in the given folder, with its stdout/stderr going to files
(JAX's backend is not initialised before the fork). Prints a JSON list of
{status, stdout, stderr}.

    python tests/helpers/fork_cli.py MODULE CASES.json [CWD]
"""

import json
import os
import runpy
import sys
import tempfile

import jax  # noqa: F401  (imported once, before the forks)
import ml_collections  # noqa: F401
import numpy  # noqa: F401
import PIL.Image  # noqa: F401
from absl import app  # noqa: F401

from learned_resize.retarget import api, image_io, report  # noqa: F401
from learned_resize.runtime import no_overwrite  # noqa: F401


def run_case(module: str, argv: list[str], cwd: str) -> dict:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # the child: `python -m MODULE ARGV`
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            os.chdir(cwd)
            sys.argv = [module, *argv]
            code = 0
            try:
                runpy.run_module(module, run_name="__main__", alter_sys=True)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # an uncaught error: the traceback, as Python prints it
                import traceback

                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "status": os.waitstatus_to_exitcode(status),
            "stdout": out.read(),
            "stderr": err.read(),
        }


if __name__ == "__main__":
    module, cases_file = sys.argv[1:3]
    cwd = sys.argv[3] if len(sys.argv) > 3 else os.getcwd()
    with open(cases_file) as f:
        cases = json.load(f)
    print(json.dumps([run_case(module, argv, cwd) for argv in cases]))
