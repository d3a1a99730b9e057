"""One workdir, one writer: the trainer holds `<workdir>/trainer.lock` while it runs.

The lock is a small JSON object: the holder's `host`, `pid`, `started` (local time,
ISO 8601), `heartbeat` (Unix time, rewritten every HEARTBEAT_SECONDS by a background
thread) and a random `token` that tells the holder its own lock from another's.

`held(workdir)` takes it after the run's read-only checks and before anything is
written, and removes it when the run ends: finished, failed (`error: ...`), preempted
(exit status 75) or interrupted. A second trainer on the same workdir is refused in
one line: `error: W is in use by HOST pid PID since TIME; wait for it or ...`.

A lock is stale, and is taken over with one log line, when
  * its host is this host and its pid is not alive (a killed run; the pid is also
    stale if it is this process's own, e.g. a container restarted with the same pid), or
  * its host is another one and its heartbeat is older than STALE_SECONDS (a host
    that died; another host's pids cannot be checked).
A lock that cannot be read (half written, garbage) and is older than STALE_SECONDS is
stale too.

How it is taken: on a local (or NFS) path the file is created with O_CREAT | O_EXCL,
which only one process can win. On gs:// (etils.epath has no create-if-absent), a
trainer that finds no lock writes its own, waits READ_BACK_SECONDS and reads it back:
the last writer wins and the other sees another token and is refused. The race left:
two trainers that both find no lock, where the second writes more than
READ_BACK_SECONDS after the first (both then hold it); the time between looking and
writing is a few hundred milliseconds, far shorter. Taking over a stale lock has a
window of the same kind. On a multi-host run only process 0 takes the lock; the
outcome is broadcast so every process stops if it was refused.
"""

import contextlib
import datetime
import json
import os
import secrets
import socket
import threading
import time

import jax
from absl import logging

from learned_resize.runtime import errors
from learned_resize.runtime import workdir as workdir_lib

LOCK_FILE = "trainer.lock"
HEARTBEAT_SECONDS = 60.0
STALE_SECONDS = 600.0
READ_BACK_SECONDS = 1.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _is_stale(holder: dict | None, age: float) -> bool:
    """Whether a lock (its contents, or None if unreadable) can be taken over."""
    if not isinstance(holder, dict):
        return age > STALE_SECONDS
    if holder.get("host") == socket.gethostname():
        pid = holder.get("pid")
        return not isinstance(pid, int) or pid == os.getpid() or not _pid_alive(pid)
    heartbeat = holder.get("heartbeat")
    if not isinstance(heartbeat, int | float):
        return age > STALE_SECONDS
    return time.time() - heartbeat > STALE_SECONDS


def _in_use(workdir, holder: dict) -> errors.UserError:
    return errors.UserError(
        f"{workdir} is in use by {holder.get('host')} pid {holder.get('pid')} since "
        f"{holder.get('started')}; wait for it or stop it, or give this run another "
        f"--workdir (if that run is gone for good, delete {workdir}/{LOCK_FILE})."
    )


def _cannot_write(workdir, exc: Exception) -> errors.UserError:
    return errors.UserError(
        f"cannot write in --workdir={workdir} ({errors.brief(exc, 200)}); give a writable "
        "directory (or gs:// URL), or fix access or free space there."
    )


class _Lock:
    """The lock file of one workdir, once taken (see `take`)."""

    def __init__(self, workdir):
        self.workdir = workdir_lib.as_path(workdir)
        self.path = self.workdir / LOCK_FILE
        self.remote = workdir_lib.is_remote(self.workdir)
        self.contents = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "heartbeat": time.time(),
            "token": secrets.token_hex(8),
        }
        self._stop = threading.Event()
        self._thread = None

    def _encoded(self) -> bytes:
        return (json.dumps(self.contents, indent=2) + "\n").encode()

    def _read(self) -> tuple[dict | None, float]:
        """(contents or None if unreadable, age in seconds); FileNotFoundError if none."""
        data = self.path.read_bytes()
        try:
            age = time.time() - self.path.stat().mtime
        except (FileNotFoundError, AttributeError):
            age = 0.0
        try:
            holder = json.loads(data)
        except ValueError:
            holder = None
        return holder, age

    def _create_local(self) -> bool:
        """Creates the file if absent (atomically); False if it exists."""
        try:
            fd = os.open(os.fspath(self.path), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(self._encoded())
        return True

    def _create_remote(self) -> bool:
        """Writes, waits, reads back; False if another writer's lock is there then."""
        if self.path.exists():
            return False
        self.path.write_bytes(self._encoded())
        time.sleep(READ_BACK_SECONDS)
        try:
            holder, _ = self._read()
        except FileNotFoundError:
            return False
        return isinstance(holder, dict) and holder.get("token") == self.contents["token"]

    def take(self) -> None:
        """Takes the lock, taking over a stale one; UserError if another run holds it."""
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for _ in range(3):
                if (self._create_remote if self.remote else self._create_local)():
                    break
                try:
                    holder, age = self._read()
                except FileNotFoundError:
                    continue  # Released meanwhile: try again.
                if not _is_stale(holder, age):
                    if holder is None:
                        holder = {"host": "an unknown host", "pid": "?", "started": "just now"}
                    raise _in_use(self.workdir, holder)
                logging.warning(
                    "Taking over the stale lock %s of %s pid %s.",
                    self.path,
                    (holder or {}).get("host"),
                    (holder or {}).get("pid"),
                )
                self.path.unlink(missing_ok=True)
            else:
                raise _in_use(self.workdir, self._read()[0] or {})
        except errors.UserError:
            raise
        except Exception as e:  # OSError locally; gcsfs and fsspec raise assorted types.
            raise _cannot_write(self.workdir, e) from e
        self._thread = threading.Thread(target=self._beat, daemon=True, name="workdir-lock")
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self.contents["heartbeat"] = time.time()
            # A failed heartbeat (disk full, remounted read-only) is the run's own
            # writes' to report, in one line; the lock only ages.
            with contextlib.suppress(Exception):
                workdir_lib.write_bytes(self.path, self._encoded())

    def release(self) -> None:
        """Removes the lock if it is still this run's; never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with contextlib.suppress(Exception):
            holder, _ = self._read()
            if isinstance(holder, dict) and holder.get("token") == self.contents["token"]:
                self.path.unlink()


@contextlib.contextmanager
def held(workdir):
    """Holds `workdir`'s lock for the duration (process 0 takes it for every process).

    Raises:
      errors.UserError: another run holds it, or the workdir cannot be written.
    """
    lock = _Lock(workdir) if jax.process_index() == 0 else None
    failure = None
    if lock is not None:
        try:
            lock.take()
        except errors.UserError as e:
            failure, lock = e, None
    if jax.process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        ok = bool(multihost_utils.broadcast_one_to_all(np.int32(failure is None)))
        if not ok and failure is None:
            failure = errors.UserError(
                f"process 0 could not take the lock of {workdir}; see its error line."
            )
    if failure is not None:
        raise failure
    try:
        yield
    finally:
        if lock is not None:
            lock.release()
