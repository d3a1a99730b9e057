"""Retargeting quality scores that do not reuse the method's own mask.

* `subject_ncc`: the hand-marked subject box of the input, as a template, against the
  output: the best normalised cross-correlation over all placements (skimage's
  `match_template`), the template downscaled (aspect kept) only when it cannot fit.
  1 = the subject is in the output unchanged; squeezing, cutting or ghosting lower it.
* `artifact_score`: blobs and ghosting are output content found nowhere in the
  input. Both are low-passed (means of 2x2 blocks); every 8x8 patch of the output's
  low-pass (every other position) is matched to its nearest patch of the input's
  low-pass at every position, halved at both pixel phases of each axis (or of the
  input uniformly scaled to the output's size, so plain squeezing is not an artifact),
  so any copy of part of the input, at any offset, scores 0; the score is the worst
  patch's RMS distance x 100 (pixels in [0, 1]). 0 = every part of the output looks
  like some part of the input.
* `bidirectional_scores`: completeness / coherence (Simakov et al.) in VGG-16 conv3_3
  feature space, 0-100, 100 = perfect; the input's features are taken at every phase
  of conv3_3's 4-px grid, so a crop at any offset is as coherent as one on the grid.
* `mask_box_agreement`: recall and precision of an importance mask against the box.
"""

import jax
import jax.numpy as jnp
import numpy as np
import skimage.feature

from learned_resize.retarget import mask as mask_lib
from learned_resize.retarget import operators, vgg

_SCORE_LAYER = "conv3_3"
_PATCH = 8
_GRID = 4  # conv3_3's stride in input pixels


def subject_ncc(image: np.ndarray, box, out: np.ndarray) -> float:
    """Best NCC of image's box (x0, y0, x1, y1) over all placements in out (both [., ., 3])."""
    x0, y0, x1, y1 = box
    template = np.asarray(image, np.float32)[y0:y1, x0:x1]
    out = np.asarray(out, np.float32)
    th, tw = template.shape[:2]
    factor = min(1.0, out.shape[0] / th, out.shape[1] / tw)
    if factor < 1.0:
        size = (max(1, int(th * factor)), max(1, int(tw * factor)))
        template = np.asarray(operators.uniform_scale(jnp.asarray(template)[None], size)[0])
    return float(np.max(skimage.feature.match_template(out, template)))


def _low_pass(image: np.ndarray) -> np.ndarray:
    """Means of 2x2 blocks (a last odd row or column is dropped): a copy of the input at
    an even offset has exactly the input's low-pass, shifted; images under 16 px on a
    side are scaled to a patch instead."""
    h, w = image.shape[:2]
    if h < 2 * _PATCH or w < 2 * _PATCH:
        size = (max(_PATCH, h // 2), max(_PATCH, w // 2))
        return np.asarray(operators.uniform_scale(jnp.asarray(image, jnp.float32)[None], size)[0])
    h2, w2 = h // 2, w // 2
    blocks = np.asarray(image, np.float32)[: 2 * h2, : 2 * w2].reshape(h2, 2, w2, 2, -1)
    return blocks.mean(axis=(1, 3))


def _sq_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] squared Euclidean distances of the rows of a and b (float64)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    dist = np.sum(a**2, 1)[:, None] + np.sum(b**2, 1)[None, :] - 2.0 * a @ b.T
    return np.maximum(dist, 0.0)  # rounding can leave tiny negatives


def _patches(image: np.ndarray, stride: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(image, (_PATCH, _PATCH), axis=(0, 1))
    return windows[::stride, ::stride].reshape(-1, _PATCH * _PATCH * image.shape[2])


def artifact_score(image: np.ndarray, out: np.ndarray) -> float:
    """Worst output patch's distance to the input's patches (see module docstring)."""
    image, out = np.asarray(image, np.float32), np.asarray(out, np.float32)
    squeezed = np.asarray(operators.uniform_scale(jnp.asarray(image)[None], out.shape[:2])[0])
    # The input halved from its first and from its second row and column: a crop at an
    # odd offset is halved on the other phase, and matches one of these exactly.
    phases = [image[dy:, dx:] for dy in (0, 1) for dx in (0, 1)] + [squeezed]
    bank = np.concatenate([_patches(_low_pass(x), 1) for x in phases])
    query = _patches(_low_pass(out), 2)
    nearest = np.full(len(query), np.inf)
    for i in range(0, len(bank), 4096):  # bounded memory
        nearest = np.minimum(nearest, _sq_distances(query, bank[i : i + 4096]).min(axis=1))
    rms = np.sqrt(nearest / query.shape[1])
    return float(100.0 * rms.max())


def _features(vgg16, images: np.ndarray) -> np.ndarray:
    x = jnp.asarray(images, jnp.float32)
    return np.asarray(vgg.features(vgg16, x, (_SCORE_LAYER,))[_SCORE_LAYER])


def input_features(vgg16, image: np.ndarray, out_shape) -> list:
    """What `bidirectional_scores` needs of the input for outputs of out_shape (h, w, ...):
    conv3_3 features of image [H, W, 3] and of its copies shifted by 1-3 px on each axis
    whose size changes. conv3_3 sits on a 4-px grid (two 2x2 max-pools), so content moved
    by a retargeting (a crop, a seam) lands on another phase of that grid. The unshifted
    features come first, [h, w, C]; each shifted copy drops the same 3 px per shifted
    axis, so they are computed in one batch and may have a row or column fewer. Compute
    once to score several outputs of one size."""
    image = np.asarray(image, np.float32)
    shift_y, shift_x = image.shape[0] != out_shape[0], image.shape[1] != out_shape[1]
    feats = [_features(vgg16, image[None])[0]]
    shifts = [
        (dy, dx)
        for dy in (range(_GRID) if shift_y else (0,))
        for dx in (range(_GRID) if shift_x else (0,))
        if (dy, dx) != (0, 0)
    ]
    if shifts:
        h, w = image.shape[0] - (_GRID - 1) * shift_y, image.shape[1] - (_GRID - 1) * shift_x
        batch = np.stack([image[dy : dy + h, dx : dx + w] for dy, dx in shifts])
        feats += list(_features(vgg16, batch))
    return feats


def bidirectional_scores(
    vgg16, image: np.ndarray, out: np.ndarray, phases: list | None = None
) -> tuple[float, float]:
    """(complete, coherent), 0-100, of out against image in VGG-16 conv3_3 space.

    coherent: how near each output feature is to the input's features, taken at every
    phase of conv3_3's 4-px grid on the axes whose size changed (so a crop at any offset
    is as coherent as one on the grid); complete: how near each input feature is to
    the output's, the nearest of the input's phases at each grid cell. Both are 1 - mean
    squared distance / mean squared norm, x 100. phases: `input_features(vgg16, image,
    out.shape)`, computed here if not given.
    """
    out = np.asarray(out, np.float32)
    if phases is None:
        phases = input_features(vgg16, image, out.shape)
    f_out = _features(vgg16, out[None])[0].reshape(-1, phases[0].shape[-1])
    sq_out = np.sum(f_out.astype(np.float64) ** 2, 1)
    nearest_out = np.full(len(f_out), np.inf)  # each output feature's nearest input one
    h, w = phases[0].shape[:2]
    nearest_in = np.full((h, w), np.inf)  # each input cell's nearest output feature
    for f in phases:
        dist = _sq_distances(f.reshape(-1, f.shape[-1]), f_out)
        nearest_out = np.minimum(nearest_out, dist.min(axis=0))
        cells = dist.min(axis=1).reshape(f.shape[:2])
        corner = nearest_in[: cells.shape[0], : cells.shape[1]]  # a view
        np.minimum(corner, cells, out=corner)
    sq_in = np.sum(phases[0].astype(np.float64) ** 2, -1)
    complete = 1.0 - nearest_in.mean() / sq_in.mean()
    coherent = 1.0 - nearest_out.mean() / sq_out.mean()
    return 100.0 * max(0.0, complete), 100.0 * max(0.0, coherent)


def mask_box_agreement(mask: np.ndarray, box, size: tuple[int, int]) -> tuple[float, float]:
    """(recall, precision) of mask [h_m, w_m] (any grid) against box on an image of size."""
    m = mask_lib.resize_mask(jnp.asarray(mask, jnp.float32)[None], size)[0]
    m = np.asarray(jax.device_get(m)) > 0.5
    x0, y0, x1, y1 = box
    inside = np.zeros(size, bool)
    inside[y0:y1, x0:x1] = True
    hit = np.sum(m & inside)
    recall = hit / max(1, inside.sum())
    precision = hit / m.sum() if m.any() else float("nan")
    return float(recall), float(precision)
