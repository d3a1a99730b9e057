"""Nothing the user gave is overwritten, and bad values are refused before any work.

The command-line tools (`python -m learned_resize.retarget`, `.resize`, `.export`) run
as a user runs them, one process per command (forked by `tests/helpers/fork_cli.py`): each
refusal must be exit status 1 and exactly one `error:` line, with every file in the
folder byte-identical afterwards and nothing new written.
"""

import ast
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import skimage.data
from PIL import Image

from learned_resize.retarget import __main__ as cli
from learned_resize.retarget import api, image_io, validation
from learned_resize.runtime import no_overwrite
from tests.helpers import stand_in_vgg

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORK_CLI = os.path.join(REPO, "tests", "helpers", "fork_cli.py")


def _texture(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _run_cli(module: str, cases: list[list[str]], cwd, tmp_path) -> list[dict]:
    """`python -m module *argv` in cwd for every argv: [{status, stdout, stderr}]."""
    cases_file = tmp_path / f"cases_{module}.json"
    cases_file.write_text(json.dumps(cases))
    proc = subprocess.run(
        [sys.executable, FORK_CLI, module, str(cases_file), str(cwd)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _snapshot(folder) -> dict[str, bytes]:
    """Every file under folder (links followed) -> its bytes; links -> their targets."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder)
            files[rel] = os.readlink(path) if os.path.islink(path) else open(path, "rb").read()
    return files


def _assert_refused(result: dict, words: str, argv) -> None:
    assert result["status"] == 1, (argv, result)
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, (argv, result["stderr"])
    assert lines[0].startswith("error: "), (argv, lines)
    assert words in lines[0], (argv, words, lines[0])
    assert "Traceback" not in result["stderr"] + result["stdout"]


def _retarget_folder(tmp_path):
    """A user's folder: photos, masks, links, a folder of photos and old results."""
    d = tmp_path / "user"
    (d / "photos").mkdir(parents=True)
    (d / "results").mkdir()
    (d / "twins").mkdir()
    Image.fromarray(_texture(48, 64)).save(d / "photo.png")
    Image.fromarray(_texture(48, 64, 1)).save(d / "x_comparison.png")
    Image.fromarray(_texture(48, 64, 2)).save(d / "photos" / "a.png")
    Image.fromarray(_texture(48, 64, 3)).save(d / "photos" / "b.jpg")
    Image.fromarray(_texture(48, 64, 4)).save(d / "twins" / "c.png")
    Image.fromarray(_texture(48, 64, 5)).save(d / "twins" / "c.jpg")
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 255
    Image.fromarray(mask).save(d / "keep.png")
    Image.fromarray(mask).save(d / "pole.png")
    Image.fromarray(np.zeros((20, 80), np.uint8)).save(d / "wide.png")
    (d / "results" / "a.png").write_bytes(b"an older result the user keeps")
    (d / "old.png").write_bytes(b"yesterday's retargeting")
    (d / "a_folder.png").mkdir()
    os.symlink("photo.png", d / "link.png")
    os.link(d / "photo.png", d / "hard.png")
    os.symlink("photos", d / "photos_link")
    return d


def test_retarget_cli_refuses_to_overwrite_inputs_and_existing_files(tmp_path):
    d = _retarget_folder(tmp_path)
    absolute = str(d / "photo.png")
    cases = [
        (["--image=photo.png", "--out=photo.png"], "is the input --image=photo.png"),
        (["--image=photo.png", "--out=./photo.png"], "is the input --image=photo.png"),
        (["--image=photo.png", f"--out={absolute}"], "is the input --image=photo.png"),
        ([f"--image={absolute}", "--out=photos/../photo.png"], "is the input --image="),
        (["--image=photo.png", "--out=link.png"], "is the input --image=photo.png"),
        (["--image=link.png", "--out=photo.png"], "is the input --image=link.png"),
        (["--image=photo.png", "--out=hard.png"], "is the input --image=photo.png"),
        (["--image=photo.png", "--out=hard.png", "--overwrite"], "is the input --image="),
        (["--image=photo.png", "--protect=keep.png", "--out=keep.png"], "input --protect="),
        (["--image=photo.png", "--remove=pole.png", "--out=./pole.png"], "input --remove="),
        (["--image=x_comparison.png", "--out=x.png"], "comparison image x_comparison.png"),
        (["--image=photo.png", "--out=old.png"], "old.png exists; pass --overwrite"),
        (["--image=photo.png", "--out=a_folder.png", "--overwrite"], "is a folder"),
        (["--image=photos", "--out=photos"], "is the input --image="),
        (["--image=photos", "--out=photos_link", "--overwrite"], "is the input --image="),
        (["--image=photos", "--out=results"], "a.png exists; pass --overwrite"),
        (["--image=twins", "--out=results"], "are the same file"),
        (["--image=photo.png", "--protect=wide.png", "--out=new.png"], "is 80x20 but"),
    ]
    before = _snapshot(d)
    results = _run_cli("learned_resize.retarget", [argv for argv, _ in cases], d, tmp_path)
    for (argv, words), result in zip(cases, results):
        _assert_refused(result, words, argv)
        assert result["stdout"] == "", (argv, result["stdout"])  # refused before any work
    assert _snapshot(d) == before  # every byte kept, nothing new written


BAD_CONFIG = [
    ("iterations=(40, 0)", "config.iterations must be 2 whole number(s) >= 1"),
    ("iterations=(40, -5)", "config.iterations must be 2 whole number(s) >= 1"),
    ("iterations=(40,)", "one per scale"),
    ("iterations=(40.5, 10)", "config.iterations must be"),
    ("scales=(0.0, 1.0)", "config.scales must be"),
    ("scales=(-0.5, 1.0)", "config.scales must be"),
    ("scales=(0.5, 2.0)", "in (0, 1]"),
    ("crop_fraction=1.5", "config.crop_fraction must be a number in [0, 1]"),
    ("crop_fraction=-0.1", "config.crop_fraction must be a number in [0, 1]"),
    ("crop_fraction=nan", "config.crop_fraction must be a number in [0, 1]"),
    ("rtol=-1.0", "config.rtol must be a finite number >= 0"),
    ("tol=inf", "config.tol must be a finite number >= 0"),
    ("beta=nan", "config.beta must be a finite number >= 0"),
    ("tv_weight=-1.0", "config.tv_weight must be a finite number >= 0"),
    ("chunk=0", "config.chunk must be a whole number >= 1"),
    ("memory_size=0", "config.memory_size must be a whole number >= 1"),
    ("max_linesearch_steps=0", "config.max_linesearch_steps must be a whole number >= 1"),
    ("plan_stride=0", "config.plan_stride must be a whole number >= 1"),
    ("bucket=-16", "config.bucket must be a whole number"),
    ("winograd_min_pixels=-1", "config.winograd_min_pixels must be a whole number >= 0"),
    ("perc_scale=0.0", "config.perc_scale must be a number in (0, 1]"),
    ("rec_weights=(1.0, 1.0)", "config.rec_weights must be 4 finite number(s) >= 0"),
    ("stats=median", "config.stats must be one of input, imagenet"),
    ("init=zeros", "config.init must be one of plan, uniform"),
    ("mask.threshold=1.5", "config.mask.threshold must be a number in [0, 1]"),
    ("mask.image_side=8", "config.mask.image_side must be a whole number of px"),
    ("mask.open_size=0", "config.mask.open_size must be a whole number"),
    ("mask.bonus=-1.0", "config.mask.bonus must be a finite number >= 0"),
]


def test_retarget_cli_refuses_bad_settings_before_any_work(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    Image.fromarray(_texture(48, 64)).save(d / "photo.png")
    before = _snapshot(d)
    cases = [
        ["--image=photo.png", "--out=out.png", f"--config.{setting}"] for setting, _ in BAD_CONFIG
    ]
    results = _run_cli("learned_resize.retarget", cases, d, tmp_path)
    for argv, (_, words), result in zip(cases, BAD_CONFIG, results):
        _assert_refused(result, words, argv)
    assert _snapshot(d) == before


def _value(text: str):
    """A command-line value as the config flag parses it: a literal, a float or a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            return float(text)
        except ValueError:
            return text


# Unknown keys and a config file: ml_collections would raise at the flag's definition.
BAD_KEYS = [
    (["--config.nonexistent=3"], "config.nonexistent; see learned_resize/retarget/defaults.py"),
    (["--config.mask.treshold=0.4"], "config.mask.treshold; did you mean config.mask.threshold?"),
    (["--config.work_sid=128"], "did you mean config.work_side?"),
    (["-config.work_sid=128"], "did you mean config.work_side?"),
    (["--noconfig.nope"], "unknown config key config.nope"),
    (["--config.mask.threshold.x=1"], "unknown config key config.mask.threshold.x"),
    (["--config.compile_cache="], "did you mean the flag --compile_cache?"),
    (["--config=configs/tiny.py"], "--config takes no file here"),
    (["--config.operator=seam", "--config"], "--config takes no file here"),
]  # fmt: skip


def test_retarget_cli_refuses_unknown_config_keys_in_one_line(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    Image.fromarray(_texture(48, 64)).save(d / "photo.png")
    before = _snapshot(d)
    cases = [["--image=photo.png", "--out=out.png", *extra] for extra, _ in BAD_KEYS]
    results = _run_cli("learned_resize.retarget", cases, d, tmp_path)
    for argv, (_, words), result in zip(cases, BAD_KEYS, results):
        _assert_refused(result, words, argv)
        assert result["stdout"] == "", (argv, result["stdout"])
    assert _snapshot(d) == before


@pytest.mark.parametrize("setting, words", BAD_CONFIG)
def test_check_config_refuses(setting, words):
    name, value = setting.split("=")
    cfg = api.get_config()
    parent = cfg.mask if name.startswith("mask.") else cfg
    field = name.removeprefix("mask.")
    with cfg.ignore_type(), parent.ignore_type():
        parent[field] = _value(value)
    with pytest.raises(ValueError, match=None) as info:
        validation.check_config(cfg)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_default_and_stand_in_configs_pass():
    validation.check_config(api.get_config())
    validation.check_config(stand_in_vgg.small_config(api))
    cfg = api.get_config()
    with cfg.ignore_type():
        cfg.iterations = (40, True)  # a bool is no iteration count
    with pytest.raises(ValueError, match="config.iterations"):
        validation.check_config(cfg)


def test_mask_of_the_photos_aspect_ratio_is_resized_with_a_note(tmp_path):
    mask = np.zeros((24, 32), np.uint8)
    mask[4:12, 8:16] = 255
    path = tmp_path / "half.png"
    Image.fromarray(mask).save(path)
    notes = []
    got = image_io.read_mask(path, (48, 64), "--protect=half.png", notes.append)
    np.testing.assert_array_equal(got, np.repeat(np.repeat(mask > 0, 2, 0), 2, 1))
    assert notes == ["note: --protect=half.png is 32x24, resized to the photo's 64x48 "
                     "(nearest neighbour)."]  # fmt: skip
    same = image_io.read_mask(path, (24, 32), "--protect=half.png", notes.append)
    np.testing.assert_array_equal(same, mask > 0)
    assert len(notes) == 1  # no note when the sizes agree
    with pytest.raises(ValueError, match="is 32x24 but the photo is 32x32"):
        image_io.read_mask(path, (32, 32), "--protect=half.png")


def _use_stand_ins(monkeypatch):
    from learned_resize.retarget import weights

    nets = stand_in_vgg.nets()
    monkeypatch.setattr(weights, "load_vgg", lambda depth: nets[0] if depth == 19 else nets[1])


def test_overwrite_replaces_old_results_but_never_inputs(tmp_path, monkeypatch):
    _use_stand_ins(monkeypatch)
    photos, results = tmp_path / "photos", tmp_path / "results"
    photos.mkdir()
    results.mkdir()
    for k, name in enumerate(("a.png", "b.jpg")):
        Image.fromarray(_texture(48, 64, k)).save(photos / name)
    (results / "a.png").write_bytes(b"old")
    inputs = _snapshot(photos)
    cfg = stand_in_vgg.small_config(api)
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        cli.run(str(photos), ("48x", None, None), str(results), cfg, False)
    assert (results / "a.png").read_bytes() == b"old"
    cli.run(str(photos), ("48x", None, None), str(results), cfg, False, overwrite=True)
    assert sorted(os.listdir(results)) == ["a.png", "b.png"]
    for name in ("a.png", "b.png"):
        written = np.asarray(Image.open(results / name))
        assert written.shape == (48, 48, 3) and written.std() > 10  # a picture, not a blank
    assert _snapshot(photos) == inputs
    with pytest.raises(ValueError, match="is the input --image="):  # never, even so
        cli.run(str(photos), ("48x", None, None), str(photos), cfg, False, overwrite=True)
    assert _snapshot(photos) == inputs


def _camera(side=96):
    """scikit-image's cameraman (a grey photo), scaled to side x side."""
    return np.asarray(Image.fromarray(skimage.data.camera()).resize((side, side), Image.LANCZOS))


def test_grey_photo_stays_grey_through_the_api():
    gray = _camera()
    cfg = stand_in_vgg.small_config(api)
    nets = stand_in_vgg.nets()
    for image in (gray, np.repeat(gray[..., None], 3, axis=-1)):
        out = np.asarray(
            api.retarget(image, (96, 72), config=cfg, vgg19=nets[0], vgg16=nets[1], log=None)
        )
        assert out.shape == (96, 72, 3)
        np.testing.assert_array_equal(out[..., 0], out[..., 1])
        np.testing.assert_array_equal(out[..., 1], out[..., 2])
        assert out.std() > 0.1  # still the photo: the cameraman's contrast is kept
    assert image_io.is_gray(gray) and not image_io.is_gray(_texture(8, 8))
    colour = np.asarray(
        api.retarget(_texture(48, 64), (48, 48), config=cfg, vgg19=nets[0], vgg16=nets[1], log=None)
    )
    assert np.abs(colour[..., 0] - colour[..., 1]).max() > 0.05  # colour photos stay colour


def test_grey_photo_is_written_grey_by_the_cli(tmp_path, monkeypatch):
    _use_stand_ins(monkeypatch)
    photo, out = tmp_path / "camera.png", tmp_path / "small.png"
    Image.fromarray(_camera()).save(photo)
    before = photo.read_bytes()
    cli.run(str(photo), ("72x", None, None), str(out), stand_in_vgg.small_config(api), False)
    written = Image.open(out)
    assert written.mode == "L" and written.size == (72, 96)
    pixels = np.asarray(written, np.float64)
    assert pixels.std() > 25 and photo.read_bytes() == before


def test_same_file_sees_through_spellings_and_links(tmp_path):
    (tmp_path / "a.png").write_bytes(b"a")
    os.symlink(tmp_path / "a.png", tmp_path / "l.png")
    assert no_overwrite.same_file(tmp_path / "l.png", tmp_path / "sub" / ".." / "a.png")
    assert not no_overwrite.same_file(tmp_path / "a.png", tmp_path / "b.png")
    assert no_overwrite.inside(tmp_path / "a.png", tmp_path)
    assert not no_overwrite.inside(tmp_path, tmp_path)


def _fake_run(d):
    """A run's workdir as the tools see it before reading it: config and checkpoint files."""
    (d / "run" / "checkpoints" / "5").mkdir(parents=True)
    (d / "run" / "config.json").write_text('{"resizer": {"kind": "learned"}}')
    (d / "run" / "checkpoints" / "5" / "params").write_bytes(b"weights")


def test_export_cli_never_writes_over_the_checkpoint_or_old_files(tmp_path):
    d = tmp_path / "user"
    d.mkdir()
    _fake_run(d)
    (d / "old.jaxexport").write_bytes(b"an older artifact")
    (d / "new.json").write_text("{}")
    cases = [
        (["--checkpoint=run", "--out=run"], "is the input --checkpoint=run"),
        (["--checkpoint=run", "--out=./run/", "--overwrite"], "is the input --checkpoint="),
        (["--checkpoint=run", "--out=run/config.jaxexport", "--overwrite"], "config.json is"),
        (
            ["--checkpoint=run/checkpoints/5", "--out=run/config.jaxexport", "--overwrite"],
            "config.json is",
        ),  # fmt: skip
        (
            ["--checkpoint=run", "--out=run/checkpoints/5/params", "--overwrite"],
            "would replace a file of the input --checkpoint=run",
        ),  # fmt: skip
        (["--checkpoint=run", "--out=old.jaxexport"], "old.jaxexport exists; pass --overwrite"),
        (["--checkpoint=run", "--out=new.jaxexport"], "new.json exists; pass --overwrite"),
    ]
    before = _snapshot(d)
    results = _run_cli("learned_resize.tools.export", [argv for argv, _ in cases], d, tmp_path)
    for (argv, words), result in zip(cases, results):
        _assert_refused(result, words, argv)
    assert _snapshot(d) == before


def test_resize_cli_never_writes_over_inputs_or_old_files(tmp_path):
    d = tmp_path / "user"
    (d / "in").mkdir(parents=True)
    (d / "out").mkdir()
    _fake_run(d)
    for k, name in enumerate(("a.png", "b.png")):
        Image.fromarray(_texture(28, 28, k)).save(d / "in" / name)
    (d / "out" / "a.png").write_bytes(b"an older result")
    os.symlink("in", d / "in_link")
    cases = [
        (["--images=in", "--out=in"], "is the input --images="),
        (["--images=in", "--out=./in", "--overwrite"], "is the input --images="),
        (["--images=in", "--out=in_link", "--overwrite"], "is the input --images="),
        (["--images=in", "--out=out"], "a.png exists; pass --overwrite"),
    ]
    before = _snapshot(d)
    results = _run_cli(
        "learned_resize.tools.apply_resizer",
        [["--checkpoint=run", *argv] for argv, _ in cases],
        d,
        tmp_path,
    )
    for (argv, words), result in zip(cases, results):
        _assert_refused(result, words, argv)
    assert _snapshot(d) == before
