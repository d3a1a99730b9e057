"""Content preservation of every retargeting operator on photos shipped with scikit-image.

    python bench/retarget_quality.py                      # 4 photos, 3/4 and 1/2 width
    python bench/retarget_quality.py --photos=astronaut --ratios=0.75 --width=512

Each photo (scaled to --width) is retargeted to each width ratio by uniform scaling,
center crop, classical pixel seam carving, pixel seam carving that also avoids our
importance mask, and ours (reconstruction from retargeted VGG-19 features, CLI
defaults). Three scores, all 0-100 in VGG-16 conv3_3 feature space (stride 4), where
100 is perfect:

  * object: how well the important object survives, undistorted. The object is the
    importance mask of the input (VGG-19 block 5, as in `api`); its features inside
    the mask's bounding box form a template that slides horizontally over the
    output's features (the height is unchanged, so rows stay aligned; the output is
    zero-padded so a cut object counts as missing); the best placement's masked
    squared distance divided by the template's energy is d; score = 100 * (1 - d),
    floored at 0. A squeezed, cut or garbled object scores lower.
  * complete: how much of the whole input is still somewhere in the output (the
    completeness half of Simakov et al.'s bidirectional similarity, with feature
    vectors as patches): 100 * (1 - mean over input positions of the squared
    distance to the nearest output feature / mean input feature energy). Cropping
    scores low here.
  * coherent: the other half, output to input: whether everything in the output looks
    like something in the input. Seams and reconstruction artifacts score low here.

Prints per operator the mean score at each ratio and the mean time per image (ours
includes XLA compilation, once per new shape, as a fresh CLI run would), then writes
one comparison row per photo and ratio to --out.
"""

import argparse
import time

import jax
import numpy as np
import skimage.data
from PIL import Image

from learned_resize.retarget import api, operators, weights
from learned_resize.retarget import mask as mask_lib

_SCORE_LAYER = "conv3_3"
_STRIDE = 4


def _features(vgg16, image: np.ndarray) -> np.ndarray:
    return np.asarray(
        api.features(vgg16, jax.numpy.asarray(image)[None], (_SCORE_LAYER,))[_SCORE_LAYER][0]
    )


def object_score(vgg16, image: np.ndarray, out: np.ndarray, mask: np.ndarray) -> float:
    """Content-preservation score (0-100) of the masked object of image in out.

    Args:
      vgg16: the scoring network.
      image: [H, W, 3] input in [0, 1].
      out: [H, w, 3] retargeted image (same height).
      mask: [h_m, w_m] importance mask of the input (any grid).
    """
    if out.shape[0] != image.shape[0]:
        raise ValueError("object_score compares width changes only; keep the height.")
    f_in, f_out = _features(vgg16, image), _features(vgg16, out)
    m = np.asarray(mask_lib.resize_mask(jax.numpy.asarray(mask)[None], f_in.shape[:2])[0]) > 0.5
    if not m.any():
        return float("nan")
    rows, cols = np.nonzero(m)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    template, inside = f_in[r0:r1, c0:c1], m[r0:r1, c0:c1]
    tw = c1 - c0
    wanted = template[inside]
    energy = np.sum(wanted**2)
    padded = np.pad(f_out[r0:r1], ((0, 0), (tw, tw), (0, 0)))
    best = np.inf
    for x in range(padded.shape[1] - tw + 1):
        window = padded[:, x : x + tw][inside]
        best = min(best, float(np.sum((window - wanted) ** 2)))
    return max(0.0, 100.0 * (1.0 - best / energy))


def run_operator(name, image, size, mask, cfg, vgg19, vgg16):
    """The output of operator name for image [H, W, 3] at size (h, w)."""
    if name == "uniform":
        return operators.uniform_scale(image[None], size)[0]
    if name == "crop":
        return operators.center_crop(image, size)
    if name == "seam_carving":
        return operators.seam_carve(image, size)
    if name == "seam_carving+mask":
        return operators.seam_carve(image, size, mask)
    if name == "ours":
        return api.retarget(image, size, config=cfg, vgg19=vgg19, vgg16=vgg16, log=None)
    raise ValueError(f"Unknown operator {name!r}.")


def bidirectional_scores(vgg16, image: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """(complete, coherent) scores, 0-100, of out against image (see the docstring)."""
    f_in = _features(vgg16, image).reshape(-1, 256).astype(np.float64)
    f_out = _features(vgg16, out).reshape(-1, 256).astype(np.float64)
    sq_in, sq_out = np.sum(f_in**2, 1), np.sum(f_out**2, 1)
    dist = np.maximum(sq_in[:, None] + sq_out[None, :] - 2.0 * f_in @ f_out.T, 0.0)
    complete = 1.0 - dist.min(axis=1).mean() / sq_in.mean()
    coherent = 1.0 - dist.min(axis=0).mean() / sq_out.mean()
    return 100.0 * max(0.0, complete), 100.0 * max(0.0, coherent)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", default="astronaut,chelsea,coffee,rocket")
    parser.add_argument("--ratios", default="0.75,0.5", help="output width / input width")
    parser.add_argument("--width", type=int, default=256, help="photos are scaled to this width")
    parser.add_argument("--out", default="retarget_quality.png", help="comparison grid PNG")
    args = parser.parse_args()
    cfg = api.get_config()
    vgg19, vgg16 = weights.load_vgg(19), weights.load_vgg(16)
    ratios = [float(r) for r in args.ratios.split(",")]
    names = ["uniform", "crop", "seam_carving", "seam_carving+mask", "ours"]
    metrics = ("object", "complete", "coherent")
    scores = {(m, n, r): [] for m in metrics for n in names for r in ratios}
    seconds = {n: [] for n in names}
    grid_rows = []
    for photo in args.photos.split(","):
        image = api.as_float_image(getattr(skimage.data, photo)())
        height = round(image.shape[0] * args.width / image.shape[1])
        image = operators.uniform_scale(image[None], (height, args.width))[0]
        mask = api.importance_mask(image, vgg19, cfg)[0]
        for ratio in ratios:
            size = (height, round(ratio * args.width))
            outs = {}
            for name in names:
                start = time.perf_counter()
                out = run_operator(name, image, size, mask, cfg, vgg19, vgg16)
                outs[name] = np.asarray(jax.block_until_ready(out))
                seconds[name].append(time.perf_counter() - start)
                img = np.asarray(image)
                values = (
                    object_score(vgg16, img, outs[name], np.asarray(mask)),
                    *bidirectional_scores(vgg16, img, outs[name]),
                )
                for metric, value in zip(metrics, values):
                    scores[(metric, name, ratio)].append(value)
            print(
                f"{photo} {args.width}x{height} -> {size[1]}x{size[0]} (object/complete/"
                "coherent): "
                + ", ".join(
                    f"{n} " + "/".join(f"{scores[(m, n, ratio)][-1]:.0f}" for m in metrics)
                    for n in names
                ),
                flush=True,
            )
            grid_rows.append(api.comparison_grid(image, outs, mask))
    columns = [(m, r) for r in ratios for m in metrics]
    header = f"{'operator':<20}" + "".join(f"{f'{m} @{r:g}':>15}" for m, r in columns)
    header += f"{'s / image':>11}"
    print()
    print(f"mean over {len(args.photos.split(','))} photos at {args.width} px wide; 100 = perfect")
    print(header)
    print("-" * len(header))
    for name in names:
        line = f"{name:<20}" + "".join(
            f"{np.nanmean(scores[(m, name, r)]):>15.1f}" for m, r in columns
        )
        print(line + f"{np.mean(seconds[name]):>11.2f}")
    width = max(r.shape[1] for r in grid_rows)
    grid = np.concatenate(
        [
            np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255)
            for r in grid_rows
        ]
    )
    Image.fromarray(grid).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
