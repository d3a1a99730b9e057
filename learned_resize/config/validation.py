"""`validate_config`: every value of a config checked before anything is built.

One sentence (`errors.UserError`) names the key, the bad value and the fix. Checks
that need the data or the workdir (the dataset's size and classes, init_from
sources, other models' checkpoints) run in `train.preflight`.
"""

import math

import jax
import ml_collections

from learned_resize.config import defaults
from learned_resize.runtime import errors


def _check_size(name: str, size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise errors.UserError(
            f"config.{name} must be a pair (height, width), got {size!r}."
        ) from None
    if h <= 0 or w <= 0:
        raise errors.UserError(
            f"config.{name} must be positive, got {size!r}; use e.g. (224, 224)."
        )
    return h, w


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise errors.UserError(
            f"config.{name} must be one of {', '.join(map(str, choices))}, got {value!r}."
        )


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise errors.UserError(f"config.{name} must be an integer >= {minimum}, got {value!r}.")


def _check_positive(name: str, value) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise errors.UserError(f"config.{name} must be a finite number > 0, got {value!r}.")


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool):
        raise errors.UserError(f"config.{name} must be True or False, got {value!r}.")


def _check_str(name: str, value, example: str) -> None:
    if not isinstance(value, str):
        raise errors.UserError(f"config.{name} must be a string, got {value!r}; e.g. {example}.")


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_range(name: str, value, low, high, interval: str, example) -> None:
    """`value` a finite number in the interval `interval` ('[0, 1)', '(0, 1]', '[0, inf)')."""
    ok = _is_number(value)
    if ok:
        ok = value >= low if interval[0] == "[" else value > low
    if ok and high is not None:
        ok = value <= high if interval[-1] == "]" else value < high
    if not ok:
        raise errors.UserError(
            f"config.{name} must be a finite number in {interval}, got {value!r}; e.g. {example}."
        )


def _check_normalisation(data: ml_collections.ConfigDict) -> None:
    """config.data.mean and .std: finite numbers, the std's > 0, one per channel."""
    for key in ("mean", "std"):
        values = data[key]
        if isinstance(values, str) or not isinstance(values, tuple | list):
            raise errors.UserError(
                f"config.data.{key} must be a tuple of numbers, one per channel, got "
                f"{values!r}; e.g. (0.5,) for grayscale."
            )
        for v in values:
            if not _is_number(v) or (key == "std" and v <= 0):
                need = "finite and > 0" if key == "std" else "finite"
                raise errors.UserError(
                    f"config.data.{key}={tuple(values)!r} has the value {v!r}; every value must "
                    f"be {need} (the {key} of the images' pixels scaled to [0, 1])."
                )


def _check_optim(optim: ml_collections.ConfigDict) -> None:
    """config.optim's values beyond the learning rate and schedule."""
    _check_range("optim.momentum", optim.momentum, 0, 1, "[0, 1)", 0.9)
    _check_bool("optim.nesterov", optim.nesterov)
    _check_range("optim.weight_decay", optim.weight_decay, 0, 1, "[0, 1)", "1e-4")
    _check_range("optim.decay_rate", optim.decay_rate, 0, 1, "(0, 1]", 0.94)
    _check_range("optim.decay_epochs", optim.decay_epochs, 0, None, "(0, inf)", 2.0)
    _check_range("optim.warmup_epochs", optim.warmup_epochs, 0, None, "[0, inf)", 5.0)
    _check_range("optim.label_smoothing", optim.label_smoothing, 0, 1, "[0, 1)", 0.1)
    _check_range("optim.grad_clip_norm", optim.grad_clip_norm, 0, None, "[0, inf)", "1.0 (0: off)")


def _check_init_from(config: ml_collections.ConfigDict) -> None:
    """config.init_from's values (whether the checkpoints exist: train.preflight)."""
    init = config.init_from
    _check_str("init_from.path", init.path, "'' or a workdir")
    _check_str("init_from.resizer_path", init.resizer_path, "'' or a workdir")
    if isinstance(init.parts, str) or not isinstance(init.parts, tuple | list):
        raise errors.UserError(
            f"config.init_from.parts must be a tuple of part names, got {init.parts!r}; "
            "e.g. ('classifier',)."
        )
    if init.path and not init.parts:
        raise errors.UserError(
            f"config.init_from.path={init.path} is set but config.init_from.parts is empty, so "
            "nothing would be loaded; name the parts, e.g. ('classifier',), or clear the path."
        )
    takes_resizer = init.resizer_path or (init.path and "resizer" in init.parts)
    if takes_resizer and config.resizer.kind != "learned":
        key = "resizer_path" if init.resizer_path else "parts"
        raise errors.UserError(
            f"config.init_from.{key} loads a learned resizer but config.resizer.kind="
            f"{config.resizer.kind!r} has none; set config.resizer.kind='learned' or do not "
            "load the resizer."
        )
    if init.path and "score_head" in init.parts and config.task != "iqa":
        raise errors.UserError(
            f"config.init_from.parts names 'score_head' but config.task={config.task!r} has no "
            "score head; drop 'score_head' from config.init_from.parts."
        )


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises errors.UserError (one sentence) for any bad value, before anything is built."""
    _check_choice("task", config.task, defaults.TASKS)
    _check_size("input_size", config.input_size)
    out_h, out_w = _check_size("resizer.output_size", config.resizer.output_size)
    _check_choice("resizer.kind", config.resizer.kind, ("learned", *defaults.FIXED_METHODS))
    _check_choice("model.name", config.model.name, sorted(defaults.MIN_INPUT_SIZE))
    min_size = defaults.MIN_INPUT_SIZE[config.model.name]
    if min(out_h, out_w) < min_size:
        raise errors.UserError(
            f"config.resizer.output_size={tuple(config.resizer.output_size)} is smaller than "
            f"{config.model.name}'s minimum input {min_size}x{min_size}; raise the output size."
        )
    _check_choice("model.dtype", config.model.dtype, defaults.DTYPES)
    _check_choice("optim.schedule", config.optim.schedule, defaults.SCHEDULES)
    _check_choice("resizer.norm", config.resizer.norm, defaults.NORMS)
    _check_choice("data.aspect", config.data.aspect, defaults.ASPECT_MODES)
    _check_positive("optim.learning_rate", config.optim.learning_rate)
    _check_positive("optim.reference_batch_size", config.optim.reference_batch_size)
    _check_int("seed", config.seed, 0)
    _check_int("batch_size", config.batch_size, 1)
    _check_int("log_every_steps", config.log_every_steps, 1)
    _check_int("checkpoint_every_steps", config.checkpoint_every_steps, 1)
    _check_int("keep_checkpoints", config.keep_checkpoints, 1)
    _check_int("eval_every_steps", config.eval_every_steps, 0)
    _check_int("num_eval_images", config.num_eval_images, 0)
    if config.num_eval_images > config.batch_size:
        raise errors.UserError(
            f"config.num_eval_images={config.num_eval_images} is more than one eval batch "
            f"(config.batch_size={config.batch_size}); use at most {config.batch_size}."
        )
    _check_int("num_train_steps", config.num_train_steps, -1)
    _check_range("num_epochs", config.num_epochs, 0, None, "[0, inf)", 90)
    _check_int("resizer.num_filters", config.resizer.num_filters, 1)
    _check_int("resizer.num_res_blocks", config.resizer.num_res_blocks, 0)
    _check_choice("resizer.interpolation", config.resizer.interpolation, defaults.FIXED_METHODS)
    _check_bool("resizer.antialias", config.resizer.antialias)
    _check_range("model.head_dropout", config.model.head_dropout, 0, 1, "[0, 1)", 0.75)
    _check_optim(config.optim)
    n = jax.device_count()
    if config.batch_size % n:
        raise errors.UserError(
            f"config.batch_size={config.batch_size} is not divisible by the {n} devices; "
            f"use a multiple of {n}."
        )
    if config.num_train_steps <= 0 and config.num_epochs <= 0:
        raise errors.UserError(
            "set config.num_epochs or config.num_train_steps to a positive value."
        )
    start, stop = _check_size_pair("profile_steps", config.profile_steps)
    if not 0 <= start <= stop:
        raise errors.UserError(
            f"config.profile_steps must be (start, stop) with 0 <= start <= stop, got "
            f"{tuple(config.profile_steps)}; e.g. (10, 15), or (0, 0) for no trace."
        )
    _check_choice("data.channels", config.data.channels, (1, 3))
    _check_data(config.data)
    for key in ("data_dir", "manual_dir", "train_split", "eval_split"):
        _check_str(f"data.{key}", config.data[key], "''")
    _check_int("data.num_classes", config.data.num_classes, 1)
    _check_bool("data.flip", config.data.flip)
    _check_bool("data.jpeg_draft", config.data.jpeg_draft)
    _check_normalisation(config.data)
    for key in ("mean", "std"):
        if len(config.data[key]) != config.data.channels:
            raise errors.UserError(
                f"config.data.{key} has {len(config.data[key])} values but "
                f"config.data.channels={config.data.channels}; give one per channel."
            )
    bad_parts = set(config.init_from.parts) - set(defaults.INIT_PARTS)
    if bad_parts:
        raise errors.UserError(
            "config.init_from.parts may only name 'classifier', 'resizer' and 'score_head', "
            f"got {sorted(bad_parts)}."
        )
    _check_init_from(config)


def _check_size_pair(name: str, pair) -> tuple[int, int]:
    try:
        a, b = (int(s) for s in pair)
    except (TypeError, ValueError):
        raise errors.UserError(f"config.{name} must be a pair of integers, got {pair!r}.") from None
    return a, b


def _check_data(data: ml_collections.ConfigDict) -> None:
    """config.data's pipeline values (the dataset's name and splits: train.preflight)."""
    if not data.name or not isinstance(data.name, str):
        raise errors.UserError("config.data.name is empty; set it to e.g. 'fashion_mnist_local'.")
    if data.crop not in defaults.CROPS:
        raise errors.UserError(f"config.data.crop={data.crop!r}; use one of {defaults.CROPS}.")
    for key in ("min_area", "eval_crop_fraction"):
        if not _is_number(data[key]) or not 0 < data[key] <= 1:
            raise errors.UserError(f"config.data.{key}={data[key]}; use a fraction in (0, 1].")
    workers = data.num_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < -1:
        raise errors.UserError(
            f"config.data.num_workers={workers!r}; use an integer >= 0, or -1 to pick it "
            "from the host's CPUs."
        )
    prefetch = data.prefetch
    if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 0:
        raise errors.UserError(f"config.data.prefetch={prefetch!r}; use an integer >= 0.")
