"""`config.profile_steps = (start, stop)`: a jax.profiler trace of those train steps.

The trace goes to the workdir's `tensorboard/` directory (TensorBoard's profile
plugin reads `tensorboard/plugins/profile/<run>/`); open it with
`tensorboard --logdir=WORKDIR/tensorboard` and the "Profile" tab (pip install
tensorboard-plugin-profile), or load the `.xplane.pb` file in XProf/Perfetto. For a
gs:// workdir the trace is written to a local temporary directory and copied to the
bucket when it stops.
"""

import pathlib
import shutil
import tempfile

import jax
from absl import logging

from learned_resize.runtime import workdir as workdir_lib


class StepProfiler:
    """Starts a trace before step `start` and stops it before step `stop` (0, 0: off)."""

    def __init__(self, profile_steps, logdir):
        self.start, self.stop = (int(s) for s in profile_steps)
        self.logdir = workdir_lib.as_path(logdir)
        self._local = None
        self.active = False

    def step(self, step: int) -> None:
        """Call before running train step `step` (0-based)."""
        if self.start == self.stop:
            return
        if step == self.start and not self.active:
            remote = workdir_lib.is_remote(self.logdir)
            self._local = tempfile.mkdtemp(prefix="learned_resize_trace_") if remote else None
            jax.profiler.start_trace(self._local or str(self.logdir))
            self.active = True
            logging.info("Profiling train steps %d..%d.", self.start, self.stop - 1)
        elif step == self.stop and self.active:
            self.close()

    def close(self) -> None:
        if not self.active:
            return
        jax.profiler.stop_trace()
        self.active = False
        if self._local:
            local = pathlib.Path(self._local)
            for f in local.rglob("*"):
                if f.is_file():
                    workdir_lib.write_bytes(self.logdir / f.relative_to(local), f.read_bytes())
            shutil.rmtree(self._local, ignore_errors=True)
        logging.info(
            "Wrote a profile of steps %d..%d to %s.", self.start, self.stop - 1, self.logdir
        )
