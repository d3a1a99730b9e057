"""`check_config`: every retargeting setting checked before any weights load.

Every field `defaults.get_config` defines is checked here (choices, ranges, one
iteration cap per scale), so that an absurd override is one `error:` line, not a crash
later or a wasted compilation.
"""

import math

import numpy as np

from learned_resize.retarget import buckets, image_io, multi, seams
from learned_resize.retarget.plans import OPERATORS


def _is_whole(value, low: int, high: float = float("inf")) -> bool:
    whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    return whole and low <= value <= high


def _is_number(value, low: float, high: float = float("inf"), low_open: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return False
    if not math.isfinite(value) or value > high:
        return False
    return value > low if low_open else value >= low


def _is_sequence(value) -> bool:
    return isinstance(value, (tuple, list))


def _is_sequence_of(values, count: int, ok) -> bool:
    """values is a tuple or list of exactly count items, each passing ok."""
    return _is_sequence(values) and len(values) == count and all(ok(v) for v in values)


def _check_choice(cfg, name: str, choices) -> None:
    value = cfg.get(name, choices[0])
    if value not in choices:
        raise ValueError(f"config.{name} must be one of {', '.join(choices)}, got {value!r}.")


def _check_layers(cfg, layers: str, weights: str, allow_empty: bool) -> None:
    names, values = cfg[layers], cfg[weights]
    if not _is_sequence(names) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"config.{layers} must be a tuple of layer names, got {names!r}.")
    if not names and not allow_empty:
        raise ValueError(f"config.{layers} must name at least one layer.")
    if not _is_sequence_of(values, len(names), lambda v: _is_number(v, 0.0)):
        raise ValueError(
            f"config.{weights} must be {len(names)} finite number(s) >= 0, one per layer of "
            f"config.{layers}, got {values!r}."
        )


def check_config(cfg) -> None:
    """Raises ValueError (one sentence) for an unknown choice or an absurd number setting.

    Everything `get_config` defines is checked here, before any weights load or anything
    compiles, so that a typo costs nothing.
    """
    if cfg.operator not in OPERATORS:
        raise ValueError(
            f"Unknown operator {cfg.operator!r}; choose one of {', '.join(OPERATORS)}."
        )
    fraction = cfg.get("crop_fraction", multi.CROP_FRACTION)
    if not _is_number(fraction, 0.0, 1.0):
        raise ValueError(f"config.crop_fraction must be a number in [0, 1], got {fraction!r}.")
    pixels = cfg.get("winograd_min_pixels", 0)
    if not _is_whole(pixels, 0):
        raise ValueError(f"config.winograd_min_pixels must be a whole number >= 0, got {pixels!r}.")
    work_side = cfg.get("work_side", 0)
    if not _is_whole(work_side, 0, image_io.MAX_SIDE) or 0 < work_side < 64:
        raise ValueError(
            f"config.work_side must be 0 (the photo's own size) or a whole number of px in "
            f"[64, {image_io.MAX_SIDE}], got {work_side!r}."
        )
    if not _is_number(cfg.get("blend_margin", 0.0), 0.0):
        raise ValueError(
            f"config.blend_margin must be a finite number of px >= 0, got {cfg.blend_margin!r}."
        )
    if cfg.get("carry", "change") not in buckets.CARRIES:
        raise ValueError(
            f"config.carry must be one of {', '.join(buckets.CARRIES)}, got {cfg.carry!r}."
        )
    auto_weights = cfg.get("auto_weights", (1.0, 1.0))
    if not _is_sequence_of(auto_weights, 2, lambda v: _is_number(v, 0.0)):
        raise ValueError(
            f"config.auto_weights must be two finite numbers >= 0 (subject, artifact), "
            f"got {auto_weights!r}."
        )
    bucket = cfg.get("bucket", 0)
    if not _is_whole(bucket, 0, 256):
        raise ValueError(
            f"config.bucket must be a whole number of px in [0, 256] (0 = exact sizes), "
            f"got {bucket!r}."
        )
    scales, iterations = cfg.scales, cfg.iterations
    if not _is_sequence(scales) or not scales or not all(_is_number(s, 0, 1, True) for s in scales):
        raise ValueError(
            f"config.scales must be one or more fractions of the output size in (0, 1], "
            f"e.g. (0.5, 1.0), got {scales!r}."
        )
    if not _is_sequence_of(iterations, len(scales), lambda n: _is_whole(n, 1)):
        raise ValueError(
            f"config.iterations must be {len(scales)} whole number(s) >= 1, one per scale of "
            f"config.scales={tuple(scales)}, got {iterations!r}."
        )
    for name, low, high in (
        ("plan_stride", 1, 64),
        ("chunk", 1, float("inf")),
        ("memory_size", 1, 1000),
        ("max_linesearch_steps", 1, 1000),
        ("noise_seed", 0, 2**31 - 1),
    ):
        if not _is_whole(cfg.get(name, low), low, high):
            bound = "" if high == float("inf") else f" and <= {high}"
            raise ValueError(
                f"config.{name} must be a whole number >= {low}{bound}, got {cfg[name]!r}."
            )
    for name in ("rtol", "tol", "alpha", "beta", "gamma", "tv_weight", "stats_weight"):
        if not _is_number(cfg.get(name, 0.0), 0.0):
            raise ValueError(f"config.{name} must be a finite number >= 0, got {cfg[name]!r}.")
    perc_scale = cfg.get("perc_scale", 1.0)
    if not _is_number(perc_scale, 0.0, 1.0, low_open=True):
        raise ValueError(f"config.perc_scale must be a number in (0, 1], got {perc_scale!r}.")
    _check_layers(cfg, "rec_layers", "rec_weights", allow_empty=False)
    _check_layers(cfg, "perc_layers", "perc_weights", allow_empty=True)
    _check_choice(cfg, "perc_target", ("plan", "uniform"))
    _check_choice(cfg, "stats", ("input", "imagenet"))
    _check_choice(cfg, "init", ("plan", "uniform", "noise"))
    _check_choice(cfg, "energy", seams.ENERGIES)
    _check_mask_config(cfg.mask)


def _check_mask_config(m) -> None:
    layers = m.layers
    if not _is_sequence(layers) or not layers or not all(isinstance(n, str) for n in layers):
        raise ValueError(f"config.mask.layers must name at least one layer, got {layers!r}.")
    if not _is_number(m.threshold, 0.0, 1.0):
        raise ValueError(f"config.mask.threshold must be a number in [0, 1], got {m.threshold!r}.")
    if not _is_whole(m.image_side, 16, image_io.MAX_SIDE):
        raise ValueError(
            f"config.mask.image_side must be a whole number of px in "
            f"[16, {image_io.MAX_SIDE}], got {m.image_side!r}."
        )
    for name in ("open_size", "close_size"):
        if not _is_whole(m[name], 1, 64):
            raise ValueError(
                f"config.mask.{name} must be a whole number of grid cells in [1, 64] (1 = off), "
                f"got {m[name]!r}."
            )
    if not _is_number(m.bonus, 0.0):
        raise ValueError(f"config.mask.bonus must be a finite number >= 0, got {m.bonus!r}.")
    if not isinstance(m.get("fallback", True), bool):
        raise ValueError(f"config.mask.fallback must be True or False, got {m.fallback!r}.")
