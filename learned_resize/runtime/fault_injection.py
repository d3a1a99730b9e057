"""Faults on request, for the tests that kill a run at a chosen moment.

The trainer announces named points (`train.add_point_hook`): `<stage>:step<N>` after
step N, `<stage>:eval` as the final eval starts, `<stage>:done` after results.json.
`install_from_environment()` (called by `main.run`) installs a hook only when one of
these variables is set, so a normal run carries no fault code:

  LEARNED_RESIZE_KILL_AT=learned:step3   SIGKILL at that point
  LEARNED_RESIZE_TERM_AT=baseline:eval   SIGTERM at that point (a preemption)
  LEARNED_RESIZE_KILL_AT_STEP=5          SIGKILL after step 5 of any stage
"""

import os
import signal


def install_from_environment() -> None:
    from learned_resize import train

    faults = [
        (signal.SIGKILL, os.environ.get("LEARNED_RESIZE_KILL_AT", "")),
        (signal.SIGTERM, os.environ.get("LEARNED_RESIZE_TERM_AT", "")),
    ]
    faults = [(sig, where) for sig, where in faults if where]
    kill_step = os.environ.get("LEARNED_RESIZE_KILL_AT_STEP", "")
    if not faults and not kill_step:
        return

    def hook(point: str) -> None:
        if kill_step and point.endswith(f":step{kill_step}"):
            os.kill(os.getpid(), signal.SIGKILL)
        for sig, where in faults:
            if where == point:
                os.kill(os.getpid(), sig)

    train.add_point_hook(hook)
