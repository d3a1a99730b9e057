"""Runs `python -m learned_resize.main` once per argv, each in a process of its own, fast.

Imports what the CLI imports once, then forks one child per case; the child runs the
CLI's own entry point (`learned_resize.main.run()`, flag parsing included) with
that argv and its stdout/stderr going to files, exactly as `python -m
learned_resize.main ARGS` would (JAX's backend is not initialised before the
fork). Prints a JSON list of {status, stdout, stderr}. Used by tests/integration/test_cli_errors.py.

    python tests/helpers/cli_driver.py CASES.json
"""

import json
import os
import sys
import tempfile

os.environ["LEARNED_RESIZE_MALLOC"] = "system"  # no re-exec in the children

import jax  # noqa: E402,F401  (imported once, before the forks)
import tensorflow_datasets  # noqa: E402,F401

from learned_resize import train  # noqa: E402,F401
from learned_resize.config import validation  # noqa: E402,F401


def run_case(argv: list[str]) -> dict:
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # the child: the CLI, as `python -m learned_resize.main ARGV`
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv = ["learned_resize.main", *argv]
            try:
                from learned_resize import main

                main.run()
                os._exit(0)
            except SystemExit as e:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(e.code if isinstance(e.code, int) else 1)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return {
            "status": os.waitstatus_to_exitcode(status),
            "stdout": out.read(),
            "stderr": err.read(),
        }


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    print(json.dumps([run_case(argv) for argv in cases]))
