"""Image quality assessment: score head, EMD loss and the AVA evaluation metrics.

The IQA setting of the learned-resizer paper (docs/PAPERS.md, part A) follows NIMA: a
backbone's pooled features go through dropout and a dense layer to a softmax over
the ten score bins 1..10, trained with the Earth Mover's Distance between the
predicted and the voted score distributions,

    EMD(p, q) = (1/K * sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r),  K = 10, r = 2,

and reported as the Pearson (PLCC) and Spearman (SRCC) correlations between the
predicted and the ground-truth mean scores, plus the binary (good/bad at mean 5)
accuracy.

Training-side functions (`emd_loss`, `mean_score`, `score_std`) are JAX and
jit-able; the head itself is `models/score_head.py`. The correlation metrics are not
sums over examples, so they are computed on the host (numpy, float64) once all
evaluation predictions have been gathered: see `iqa_eval_metrics`.
"""

import jax
import jax.numpy as jnp
import numpy as np

from learned_resize.models.score_head import NUM_BINS

# The AVA scores the bins stand for.
SCORES = tuple(range(1, NUM_BINS + 1))
# AVA's usual good/bad boundary for the binary accuracy (NIMA, Murray et al.).
BINARY_THRESHOLD = 5.0


def _safe_root(x: jax.Array, r: float) -> jax.Array:
    """x ** (1/r) for x >= 0 whose gradient at x == 0 is 0 instead of inf/nan.

    EMD is exactly 0 when two CDFs agree, where the plain root's derivative is
    infinite; the double `where` keeps the untaken branch's gradient finite.
    """
    positive = x > 0
    safe_x = jnp.where(positive, x, 1.0)
    return jnp.where(positive, safe_x ** (1.0 / r), 0.0)


def emd_loss(probs: jax.Array, target_hist: jax.Array, r: float = 2.0) -> jax.Array:
    """Per-example Earth Mover's Distance between two score distributions.

    Args:
      probs: predicted distributions, [..., K] (rows sum to 1).
      target_hist: ground-truth normalised vote histograms, [..., K].
      r: the norm of the CDF difference (2 in NIMA and the paper).

    Returns:
      float32 [...]: (1/K * sum_k |CDF_p(k) - CDF_q(k)|^r)^(1/r). Average it over the
      batch yourself (with the padding mask during evaluation).
    """
    probs = jnp.asarray(probs, jnp.float32)
    target_hist = jnp.asarray(target_hist, jnp.float32)
    if probs.shape != target_hist.shape:
        raise ValueError(
            f"emd_loss needs predictions and targets of the same shape, got {probs.shape} "
            f"and {target_hist.shape}; pass [N, {NUM_BINS}] histograms for both."
        )
    cdf_diff = jnp.cumsum(probs, axis=-1) - jnp.cumsum(target_hist, axis=-1)
    mean_power = jnp.mean(jnp.abs(cdf_diff) ** r, axis=-1)
    return _safe_root(mean_power, r)


def _scores(num_bins: int, dtype=jnp.float32) -> jax.Array:
    return jnp.arange(1, num_bins + 1, dtype=dtype)


def mean_score(probs: jax.Array) -> jax.Array:
    """Mean score sum_k k * p_k of distributions over the scores 1..K; [..., K] -> [...]."""
    probs = jnp.asarray(probs, jnp.float32)
    return probs @ _scores(probs.shape[-1])


def score_std(probs: jax.Array) -> jax.Array:
    """Standard deviation of distributions over the scores 1..K; [..., K] -> [...]."""
    probs = jnp.asarray(probs, jnp.float32)
    scores = _scores(probs.shape[-1])
    mu = probs @ scores
    var = jnp.sum(probs * (scores - mu[..., None]) ** 2, axis=-1)
    return _safe_root(jnp.maximum(var, 0.0), 2.0)


# ----------------------------------------------------------------------------
# Host-side evaluation metrics (numpy, float64).


def _as_vector(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {x.shape}.")
    return x


def _check_pair(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_vector(x, "x"), _as_vector(y, "y")
    if x.shape != y.shape:
        raise ValueError(
            f"Correlation needs two score vectors of equal length, got {x.size} and {y.size}."
        )
    return x, y


def plcc(x, y) -> float:
    """Pearson linear correlation of two score vectors; nan if either is constant or n < 2."""
    x, y = _check_pair(x, y)
    if x.size < 2:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.sum(xc * xc) * np.sum(yc * yc))
    if denom == 0.0:
        return float("nan")
    # Clip the rounding excess so a perfect correlation reads exactly +-1.
    return float(np.clip(np.sum(xc * yc) / denom, -1.0, 1.0))


def average_ranks(x) -> np.ndarray:
    """Ranks 1..n of `x` where tied values share the mean of their ranks."""
    x = _as_vector(x, "x")
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Start index of every run of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    # A run occupying sorted positions [s, e) has ranks s+1..e, mean (s + 1 + e) / 2.
    run_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def srcc(x, y) -> float:
    """Spearman rank correlation (Pearson on average ranks, so ties as scipy's spearmanr)."""
    x, y = _check_pair(x, y)
    return plcc(average_ranks(x), average_ranks(y))


def binary_accuracy(pred_mean, gt_mean, threshold: float = BINARY_THRESHOLD) -> float:
    """Fraction of images put on the same side of `threshold` (mean > threshold is 'good')."""
    pred_mean, gt_mean = _check_pair(pred_mean, gt_mean)
    if pred_mean.size == 0:
        return float("nan")
    return float(np.mean((pred_mean > threshold) == (gt_mean > threshold)))


def _np_moments(hist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.arange(1, hist.shape[-1] + 1, dtype=np.float64)
    mu = hist @ scores
    var = np.sum(hist * (scores - mu[:, None]) ** 2, axis=-1)
    return mu, np.sqrt(np.maximum(var, 0.0))


def _np_emd(p: np.ndarray, q: np.ndarray, r: float) -> np.ndarray:
    diff = np.cumsum(p, axis=-1) - np.cumsum(q, axis=-1)
    return np.mean(np.abs(diff) ** r, axis=-1) ** (1.0 / r)


def iqa_eval_metrics(
    pred_probs, gt_hist, mask=None, *, threshold: float = BINARY_THRESHOLD, r: float = 2.0
) -> dict[str, float]:
    """All AVA evaluation metrics over a whole evaluation set.

    Call once with every example's prediction (gathered over batches and
    processes), not per batch: correlations do not average over batches.

    Args:
      pred_probs: predicted distributions [N, K].
      gt_hist: ground-truth normalised histograms [N, K].
      mask: optional [N] weights; examples with mask 0 (padding, skipped images)
        are dropped.
      threshold: the binary accuracy's good/bad boundary on the mean score.
      r: EMD norm.

    Returns:
      dict with plcc, srcc (of the mean scores), emd (mean over examples),
      binary_accuracy, plcc_std and srcc_std (of the score standard deviations,
      as NIMA reports), mean_abs_error and rmse of the mean score, and
      num_examples.
    """
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    gt_hist = np.asarray(gt_hist, dtype=np.float64)
    if pred_probs.ndim != 2 or pred_probs.shape != gt_hist.shape:
        raise ValueError(
            f"iqa_eval_metrics needs predictions and targets of shape [N, K], got "
            f"{pred_probs.shape} and {gt_hist.shape}."
        )
    if mask is not None:
        keep = np.asarray(mask).reshape(-1) > 0
        if keep.shape[0] != pred_probs.shape[0]:
            raise ValueError(
                f"mask has {keep.shape[0]} entries for {pred_probs.shape[0]} examples; "
                "pass one weight per example."
            )
        pred_probs, gt_hist = pred_probs[keep], gt_hist[keep]
    pred_mean, pred_std = _np_moments(pred_probs)
    gt_mean, gt_std = _np_moments(gt_hist)
    err = pred_mean - gt_mean
    n = pred_probs.shape[0]
    return {
        "plcc": plcc(pred_mean, gt_mean),
        "srcc": srcc(pred_mean, gt_mean),
        "emd": float(np.mean(_np_emd(pred_probs, gt_hist, r))) if n else float("nan"),
        "binary_accuracy": binary_accuracy(pred_mean, gt_mean, threshold),
        "plcc_std": plcc(pred_std, gt_std),
        "srcc_std": srcc(pred_std, gt_std),
        "mean_abs_error": float(np.mean(np.abs(err))) if n else float("nan"),
        "rmse": float(np.sqrt(np.mean(err * err))) if n else float("nan"),
        "num_examples": float(n),
    }


def histogram_from_counts(counts) -> np.ndarray:
    """Normalised float32 histograms from vote counts [..., K] (rows with no votes stay 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    hist = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return hist.astype(np.float32)
