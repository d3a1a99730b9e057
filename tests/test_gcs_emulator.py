"""gs:// against a local GCS emulator: etils.epath, Orbax checkpoints, TensorBoard events.

Each test writes through the client the trainer uses and reads the bucket back over
the emulator's JSON API (`list_objects`, `read_object`: plain HTTP, not the client),
so a write that went elsewhere (a local directory called `gs:`) cannot pass.
"""

import os
import struct
import subprocess
import sys
import textwrap

import gcs_emulator
import jax
import numpy as np
import pytest

gcs = gcs_emulator.fixture(scope="module")


@pytest.fixture(autouse=True)
def _no_local_gs_dir(tmp_path, monkeypatch):
    """Runs each test in an empty directory and checks no local `gs:` appeared in it."""
    monkeypatch.chdir(tmp_path)
    yield
    assert os.listdir(tmp_path) == []


def test_epath_file_operations(gcs):
    from etils import epath

    root = epath.Path(gcs.gs_path("epath"))
    (root / "sub").mkdir(parents=True, exist_ok=True)
    (root / "sub" / "a.txt").write_text("hello")
    (root / "b.bin").write_bytes(bytes(range(256)))
    assert gcs.list_objects("epath/") == {"epath/sub/a.txt": 5, "epath/b.bin": 256}
    assert gcs.read_object("epath/b.bin") == bytes(range(256))
    assert (root / "sub" / "a.txt").read_text() == "hello"
    assert (root / "sub").is_dir() and (root / "b.bin").is_file()
    assert not (root / "missing.txt").exists()
    assert sorted(p.name for p in root.iterdir()) == ["b.bin", "sub"]
    assert [p.name for p in root.glob("*.bin")] == ["b.bin"]

    (root / "b.bin").rename(root / "c.bin")
    (root / "sub").rmtree()
    assert gcs.list_objects("epath/") == {"epath/c.bin": 256}
    (root / "c.bin").unlink()
    assert gcs.list_objects("epath/") == {}


def test_epath_append_mode_overwrites_on_gcs(gcs):
    """GCS objects cannot be appended to: gcsfs turns mode 'a' into 'w' (with a warning).

    This is why metrics.jsonl on a bucket must be rewritten whole, never appended.
    """
    from etils import epath

    path = epath.Path(gcs.gs_path("append", "m.jsonl"))
    path.write_text("line1\n")
    with pytest.warns(UserWarning, match="Append mode"), path.open("a") as f:
        f.write("line2\n")
    assert gcs.read_object("append/m.jsonl") == b"line2\n"


def test_orbax_checkpoint_manager(gcs):
    import orbax.checkpoint as ocp
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharded = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())

    def state_at(step):  # numpy reference values for step `step`
        return {
            "w": np.arange(16 * 3, dtype=np.float32).reshape(16, 3) * (step + 1),
            "opt": {"count": np.array(step, np.int32), "b": np.full((5,), step, np.float32)},
        }

    shardings = {"w": sharded, "opt": {"count": replicated, "b": replicated}}
    directory = gcs.gs_path("run", "checkpoints")
    items = ("state", "meta")
    options = ocp.CheckpointManagerOptions(max_to_keep=2, create=True)
    with ocp.CheckpointManager(directory, options=options, item_names=items) as manager:
        for step in range(3):
            state = jax.tree.map(jax.device_put, state_at(step), shardings)
            meta = ocp.args.JsonSave({"step": step, "stage": "baseline"})
            manager.save(
                step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=meta)
            )
        manager.wait_until_finished()
        assert manager.latest_step() == 2
        assert manager.all_steps() == [1, 2]

    steps = {name.split("/")[2] for name in gcs.list_objects("run/checkpoints/")}
    assert steps == {"1", "2"}  # step 0 deleted from the bucket by max_to_keep

    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_at(0), shardings
    )
    with ocp.CheckpointManager(directory, item_names=items) as manager:  # as on a resume
        assert manager.all_steps() == [1, 2]
        restored = manager.restore(
            1,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
            ),
        )
    assert restored["meta"] == {"step": 1, "stage": "baseline"}
    assert restored["state"]["w"].sharding == sharded
    jax.tree.map(np.testing.assert_array_equal, dict(restored["state"]), state_at(1))


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_value():
    assert _crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C


def _tfrecords(data: bytes) -> list[bytes]:
    """Splits a TFRecord file, checking both masked CRC32C checksums of every record."""

    def masked_crc(b):
        crc = _crc32c(b)
        return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF

    records, offset = [], 0
    while offset < len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("<Q", header)
        assert struct.unpack("<I", data[offset + 8 : offset + 12])[0] == masked_crc(header)
        payload = data[offset + 12 : offset + 12 + length]
        (crc,) = struct.unpack("<I", data[offset + 12 + length : offset + 16 + length])
        assert crc == masked_crc(payload)
        records.append(payload)
        offset += 16 + length
    return records


def _summaries(gcs, prefix):
    """[(step, tag, value or 'image WxH')] of the one event file under `prefix`."""
    from tensorboardX.proto import event_pb2

    (name,) = [n for n in gcs.list_objects(prefix) if "events.out.tfevents" in n]
    out = []
    for record in _tfrecords(gcs.read_object(name)):
        event = event_pb2.Event.FromString(record)
        for v in event.summary.value:
            value = v.simple_value if v.HasField("simple_value") else None
            if v.HasField("image"):
                value = f"image {v.image.width}x{v.image.height}"
            out.append((event.step, v.tag, value))
    return out


def test_env_points_a_subprocess_at_the_emulator(gcs):
    """`gcs.env` alone is enough for a child's epath and tensorboardX's own gs:// writer.

    tensorboardX writes gs:// through google-cloud-storage, which uses anonymous
    credentials when STORAGE_EMULATOR_HOST is set. Its flush uploads the whole event
    file again (objects cannot be appended to), and its GCS writer uploads once more
    when garbage-collected at exit, retrying for 120 s if the bucket is unreachable
    by then: so it is exercised in a child process that exits while the emulator runs.
    """
    child = textwrap.dedent(
        f"""
        import numpy as np
        import tensorboardX
        from etils import epath
        epath.Path("{gcs.gs_path("child", "out.txt")}").write_text("from child")
        with tensorboardX.SummaryWriter("{gcs.gs_path("child", "tb")}") as w:
            for step, loss in enumerate([2.5, 1.25, 0.625]):
                w.add_scalar("train/loss", loss, step)
            w.add_image("grid", np.zeros((6, 4, 3), np.uint8), 3, dataformats="HWC")
        print(epath.Path("{gcs.gs_path("child", "out.txt")}").read_text())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        env=dict(os.environ, **gcs.env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "from child"
    assert gcs.read_object("child/out.txt") == b"from child"
    expected = [(s, "train/loss", v) for s, v in enumerate([2.5, 1.25, 0.625])]
    assert _summaries(gcs, "child/tb/") == [*expected, (3, "grid", "image 4x6")]


def test_tensorboard_events_written_locally_and_copied_through_epath(gcs, tmp_path_factory):
    """The alternative to tensorboardX's gs:// writer: events go to a local directory
    and each event file is copied whole to the workdir through epath on flush/close
    (no google-cloud-storage, no upload at garbage collection)."""
    import tensorboardX
    from etils import epath

    local = tmp_path_factory.mktemp("tb_local")
    remote = epath.Path(gcs.gs_path("copied", "tensorboard"))
    with tensorboardX.SummaryWriter(str(local)) as writer:
        writer.add_scalar("eval/accuracy", 0.75, 10)
    for event_file in local.iterdir():
        (remote / event_file.name).write_bytes(event_file.read_bytes())
    (event_file,) = local.iterdir()
    name = f"copied/tensorboard/{event_file.name}"
    assert gcs.read_object(name) == event_file.read_bytes()
    assert _summaries(gcs, "copied/") == [(10, "eval/accuracy", 0.75)]
