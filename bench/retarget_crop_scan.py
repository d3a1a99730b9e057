"""Scan of the 'multi' operator's crop_fraction on the TUNING photos only.

    python bench/retarget_crop_scan.py                       # 0, 0.25, 0.5, 0.75; full method
    python bench/retarget_crop_scan.py --plan_only           # the plan on the pixels (fast)
    python bench/retarget_crop_scan.py --fractions=0,1 --ratios=0.5

Each scikit-image photo (the tuning split of `photos.py`; the held-out photos are never
read here), scaled to --width, is narrowed to each ratio by the default configuration
with crop_fraction set to each value, and scored like `retarget_quality.py`: subject
NCC x100 of the hand-marked box (higher is better) and the artifact score (worst patch,
lower is better). Prints per photo and the means per fraction and ratio.
"""

import sys
import time

import numpy as np
from absl import app, flags

from learned_resize.retarget import api, operators, photos, plans, quality, weights
from learned_resize.runtime import cli, errors

_FRACTIONS = flags.DEFINE_list("fractions", ["0", "0.25", "0.5", "0.75"], "crop_fraction values.")
_RATIOS = flags.DEFINE_list("ratios", ["0.75", "0.5"], "Output width / input width.")
_WIDTH = flags.DEFINE_integer("width", 256, "Photos are scaled to this width.", lower_bound=8)
_PLAN_ONLY = flags.DEFINE_bool("plan_only", False, "Skip the reconstruction.")


def _numbers(values, low: float, high: float) -> bool:
    """Every value parses as a float in [low, high]."""
    try:
        return bool(values) and all(low <= float(v) <= high for v in values)
    except ValueError:
        return False


flags.register_validator(
    "fractions",
    lambda v: _numbers(v, 0, 1),
    "--fractions must be numbers in [0, 1], comma-separated, e.g. --fractions=0,0.5",
)
flags.register_validator(
    "ratios",
    lambda v: _numbers(v, 1e-3, float("inf")),
    "--ratios must be positive numbers, comma-separated, e.g. --ratios=0.75,0.5",
)


def run(image, size, cfg, nets, plan_only: bool) -> np.ndarray:
    """The retargeted image [h, w, 3]: the full method, or its plan applied to the pixels."""
    if not plan_only:
        return np.asarray(api.retarget_details(image, size, config=cfg, **nets, log=None).image)
    mask = api.importance_mask(image, nets["vgg19"], cfg)
    plan, _ = plans.plan_for(cfg, image, size, mask)
    return np.asarray(operators.apply_plan(plan, image[None], size)[0])


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    width = _WIDTH.value
    fractions = [float(f) for f in _FRACTIONS.value]
    ratios = [float(r) for r in _RATIOS.value]
    try:
        nets = dict(vgg19=weights.load_vgg(19))
        if not _PLAN_ONLY.value:
            nets["vgg16"] = weights.load_vgg(16)
    except FileNotFoundError as e:  # no weight cache; the message says how to make one
        sys.exit(errors.one_line(e))
    scores = {}
    for name in photos.names("tuning"):
        photo = photos.load(name)
        height = round(photo.image.shape[0] * width / photo.image.shape[1])
        image = operators.uniform_scale(api.as_float_image(photo.image)[None], (height, width))
        image = image[0]
        box = photos.scale_box(photo.box, photo.image.shape[:2], (height, width))
        for ratio in ratios:
            size = (height, round(ratio * width))
            for fraction in fractions:
                cfg = api.get_config()
                cfg.operator, cfg.crop_fraction = "multi", fraction
                start = time.perf_counter()
                out = run(image, size, cfg, nets, _PLAN_ONLY.value)
                img = np.asarray(image)
                values = (
                    100 * quality.subject_ncc(img, box, out),
                    quality.artifact_score(img, out),
                )
                scores[(name, ratio, fraction)] = values
                print(
                    f"{name} {ratio:g} crop_fraction {fraction:g}: subject {values[0]:6.1f}  "
                    f"artifact {values[1]:5.1f}  {time.perf_counter() - start:6.1f}s",
                    flush=True,
                )
    names = photos.names("tuning")
    kind = "plan only" if _PLAN_ONLY.value else "full method"
    print(f"\nmean over {len(names)} tuning photos ({kind}, {width} px wide)")
    print(f"{'crop_fraction':>13}" + "".join(f"{f'subject/artifact @{r:g}':>26}" for r in ratios))
    for fraction in fractions:
        cells = []
        for ratio in ratios:
            mean = np.mean([scores[(n, ratio, fraction)] for n in names], axis=0)
            cells.append(f"{mean[0]:.1f} / {mean[1]:.1f}")
        print(f"{fraction:>13g}" + "".join(f"{c:>26}" for c in cells))


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
