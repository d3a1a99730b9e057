"""Preemption: SIGTERM (or JAX's preemption notice on a pod) ends a run with its state saved.

A preempted run saves a checkpoint at the step it reached and exits with
`errors.EXIT_PREEMPTED` (75); running the same command again continues from there.
A SIGTERM during start-up (before the first step) or during the final evaluation
also exits 75: the newest checkpoint already holds everything, and the next run
starts or finishes that evaluation.

With several processes, JAX's preemption service owns SIGTERM and picks one step at
which every process stops (`CheckpointManager.reached_preemption`); a Python handler
would replace its handler, each process would stop at its own step and the others
would hang in the next collective. The Python handler is installed first thing at
start-up (so a SIGTERM during imports and compilation is not lost);
`jax.distributed.initialize()` then replaces it with JAX's own on multi-process runs,
where evaluation is therefore not interrupted.
"""

import signal


class Watcher:
    """Remembers a SIGTERM from `install()` on; `requested(step, manager)` polls it."""

    def __init__(self):
        self._signalled = False
        self._previous = None

    def install(self) -> "Watcher":
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self._signalled = True

    def signalled(self) -> bool:
        """A SIGTERM arrived (single process only; safe to poll anywhere)."""
        return self._signalled

    def requested(self, step: int, manager) -> bool:
        """Whether to stop after `step`: a SIGTERM, or every host agreeing on a pod."""
        return self._signalled or bool(manager.reached_preemption(step))

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
