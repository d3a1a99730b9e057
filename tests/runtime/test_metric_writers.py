"""TensorBoard event files read back: scalars, the resizer grid image and the hparams."""

import glob
import io
import json
import struct

import ml_collections
import numpy as np
import PIL.Image
import pytest
from tensorboardX.proto import event_pb2, plugin_hparams_pb2

from learned_resize.runtime import metric_writers


def read_events(logdir: str) -> list:
    """Every Event in the logdir's event files (TFRecord framing: length, crc, data, crc)."""
    events = []
    for path in sorted(glob.glob(f"{logdir}/events.out.tfevents.*")):
        with open(path, "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
            offset += 12 + length + 4
    return events


def values(events: list) -> dict:
    """tag -> [(step, Summary.Value)] over all events."""
    out = {}
    for event in events:
        for value in event.summary.value:
            out.setdefault(value.tag, []).append((event.step, value))
    return out


def test_scalars_images_and_hparams_read_back(tmp_path):
    config = ml_collections.ConfigDict(
        {"batch_size": 128, "optim": {"lr": 0.1, "nesterov": True},
         "data": {"name": "fashion_mnist_local", "mean": (0.5,), "data_dir": None}}
    )  # fmt: skip
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    writer = metric_writers.MetricWriter(str(tmp_path), enabled=True)
    writer.write_hparams(config.to_dict(), metric_tags=["eval/top1", "eval/loss"])
    writer.write_scalars(7, {"top1": np.float32(0.75), "loss": 0.5}, prefix="eval/")
    png = writer.write_image(7, "resizer_grid", grid)
    writer.close()

    found = values(read_events(str(tmp_path / "tensorboard")))
    assert [(s, v.simple_value) for s, v in found["eval/top1"]] == [(7, 0.75)]
    # The image TensorBoard shows is the PNG on disk, pixel for pixel.
    ((step, image),) = found["resizer_grid"]
    shown = np.asarray(PIL.Image.open(io.BytesIO(image.image.encoded_image_string)))
    assert step == 7 and (image.image.height, image.image.width) == grid.shape[:2]
    np.testing.assert_array_equal(shown, grid)
    np.testing.assert_array_equal(np.asarray(PIL.Image.open(png)), grid)

    # hparams plugin: the experiment lists the names and metrics, the session the values.
    ((_, experiment),) = found["_hparams_/experiment"]
    plugin = plugin_hparams_pb2.HParamsPluginData.FromString(
        experiment.metadata.plugin_data.content
    )
    names = {h.name for h in plugin.experiment.hparam_infos}
    assert names == {"batch_size", "optim.lr", "optim.nesterov", "data.name", "data.mean",
                     "data.data_dir"}  # fmt: skip
    assert [m.name.tag for m in plugin.experiment.metric_infos] == ["eval/top1", "eval/loss"]
    ((_, start),) = found["_hparams_/session_start_info"]
    session = plugin_hparams_pb2.HParamsPluginData.FromString(start.metadata.plugin_data.content)
    hparams = session.session_start_info.hparams
    assert hparams["batch_size"].number_value == 128
    assert hparams["optim.lr"].number_value == 0.1
    assert hparams["data.name"].string_value == "fashion_mnist_local"
    assert hparams["data.mean"].string_value == "(0.5,)"
    assert hparams["data.data_dir"].string_value == "None"
    assert hparams["optim.nesterov"].bool_value or hparams["optim.nesterov"].number_value == 1

    # metrics.jsonl has the same scalars.
    with open(tmp_path / "metrics.jsonl") as f:
        assert [json.loads(line) for line in f][0]["eval/top1"] == 0.75


def test_disabled_writer_writes_nothing(tmp_path):
    writer = metric_writers.MetricWriter(str(tmp_path / "w"), enabled=False)
    writer.write_hparams({"a": 1})
    assert writer.write_image(0, "g", np.zeros((2, 2, 3), np.uint8)) is None
    writer.close()
    assert not (tmp_path / "w").exists()


def test_a_full_disk_is_one_user_error_and_close_after_it_is_quiet(tmp_path, monkeypatch):
    """ENOSPC from TensorBoard's writer becomes metric_writers.WriteError (a UserError:
    main prints it as one `error:` line) naming the workdir and what to do."""
    writer = metric_writers.MetricWriter(str(tmp_path / "run"), enabled=True)
    writer.write_scalars(1, {"loss": 1.0})

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer._tb, "flush", full)
    with pytest.raises(metric_writers.WriteError) as raised:
        writer.flush()
    message = str(raised.value)
    assert str(tmp_path / "run") in message and "No space left on device" in message
    assert "free space" in message and "run the same command again" in message
    monkeypatch.setattr(writer._tb, "close", full)
    with pytest.raises(metric_writers.WriteError):
        writer.close()
    # What was written before the failure is in metrics.jsonl.
    lines = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert lines[0]["step"] == 1 and lines[0]["loss"] == 1.0
