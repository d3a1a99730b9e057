"""Shared configuration pieces: the full key set, validation, and stage handling.

Every config file in `configs/` starts from `base_config()`, which holds every key
the trainer reads, and then locks the result. A misspelt `--config.key=value`
override therefore fails in `ml_collections` before anything is built, and
`validate_config` checks values (sizes, batch divisibility, names) before any
compilation.
"""

import copy
import difflib
import math
import os

import jax
import ml_collections

from learned_resize import aspect_ratio, errors, models, precision, resizers

TASKS = ("classification", "iqa")
SCHEDULES = ("constant", "cosine", "exponential")
DTYPES = precision.DTYPES  # "auto": bfloat16 on TPUs and GPUs that compute it natively


def data_defaults() -> ml_collections.ConfigDict:
    """`config.data`: the dataset, its augmentation and the input pipeline."""
    d = ml_collections.ConfigDict()
    d.name = "fashion_mnist_local"
    d.data_dir = ""  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
    d.manual_dir = ""
    d.train_split = "train"
    d.eval_split = "test"
    d.channels = 3
    d.num_classes = 10
    d.crop = "inception"  # 'inception' (random-resized crop) or 'none'
    d.min_area = 0.08
    d.flip = True
    d.eval_crop_fraction = 0.875
    d.num_workers = -1  # grain worker processes; -1: auto (input_pipeline.resolve_num_workers)
    d.jpeg_draft = True  # decode JPEGs at a reduced DCT scale where the crop allows
    d.prefetch = 2
    # 'square': crops to input_size (the paper's); 'pad': keeps the aspect ratio, fits
    # the image in input_size and pads with black (learned_resize/aspect_ratio.py).
    d.aspect = "square"
    # Per-channel normalisation applied on device to images scaled to [0, 1].
    d.mean = (0.485, 0.456, 0.406)
    d.std = (0.229, 0.224, 0.225)
    return d


def optim_defaults() -> ml_collections.ConfigDict:
    """`config.optim`: SGD with momentum, the learning-rate schedule and the loss."""
    d = ml_collections.ConfigDict()
    d.learning_rate = 0.05  # for a batch of `reference_batch_size`; scaled linearly
    d.reference_batch_size = 256
    d.momentum = 0.9
    d.nesterov = False
    d.weight_decay = 0.0  # L2 on conv/dense kernels
    d.schedule = "exponential"
    d.decay_rate = 0.94
    d.decay_epochs = 2.0
    d.warmup_epochs = 0.0
    d.label_smoothing = 0.1
    d.grad_clip_norm = 0.0  # 0 disables clipping
    return d


def base_config() -> ml_collections.ConfigDict:
    """Returns a config with every key the trainer reads, set to neutral defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "classification"

    c.data = data_defaults()

    # Size of the images the input pipeline produces = the resizer's input.
    c.input_size = (224, 224)

    c.resizer = ml_collections.ConfigDict()
    c.resizer.kind = "bilinear"  # 'learned' or one of resizers.FIXED_METHODS
    c.resizer.output_size = (224, 224)  # = the classifier's input
    c.resizer.num_filters = 16
    c.resizer.num_res_blocks = 1
    c.resizer.interpolation = "bilinear"
    # TF's default bilinear resize, which the paper's baselines use, does not antialias.
    c.resizer.antialias = False
    # The learned resizer's normalisation: 'batch' (the paper's), 'group' or 'none'.
    c.resizer.norm = "batch"

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet50"
    # Compute dtype ("auto": precision.compute_dtype); params and BN statistics stay float32.
    c.model.dtype = "auto"
    c.model.head_dropout = 0.0  # IQA score head only

    c.optim = optim_defaults()

    c.batch_size = 256  # global, over all devices and processes
    c.num_epochs = 1.0
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.log_every_steps = 50
    c.eval_every_steps = 1000  # also at the end; 0 = only at the end
    c.checkpoint_every_steps = 1000  # also at the end and on SIGTERM
    c.keep_checkpoints = 3
    c.num_eval_images = 8  # rows of the PNG grid written at the final eval
    # jax.profiler trace of train steps [start, stop) into <workdir>/tensorboard; (0, 0) = off.
    c.profile_steps = (0, 0)

    # Initialise parts of the model from another run (stage 2 of the paper).
    c.init_from = ml_collections.ConfigDict()
    c.init_from.path = ""  # a workdir or a checkpoint directory
    c.init_from.parts = ("classifier",)  # any of 'classifier', 'resizer', 'score_head'
    c.init_from.resizer_path = ""  # optional second source for the resizer (transfer)

    # Optional multi-stage experiment: stage name -> overrides. See `stage_configs`.
    c.stages = ml_collections.ConfigDict()
    return c


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key of `config` as a dotted path ('optim.learning_rate', ...)."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict) and key != "stages":
            keys += flat_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def _is_abbreviation(short: str, long: str) -> bool:
    """'lr' of 'learning_rate', 'batch_sz' of 'batch_size': letters in order, same start."""
    if not short or short[0] != long[0]:
        return False
    rest = iter(long)
    return all(ch in rest for ch in short)


def unknown_key_message(key: str, config: ml_collections.ConfigDict) -> str:
    """One sentence naming `key` as unknown and the closest valid key."""
    valid = flat_keys(config)
    group, _, last = key.rpartition(".")
    siblings = [k for k in valid if k.rpartition(".")[0] == group]
    close = [k for k in siblings if _is_abbreviation(last, k.rpartition(".")[2])]
    close = close or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean config.{close[0]}?" if close else "see learned_resize/config_lib.py"
    return f"unknown config key config.{key}; {hint}"


def stage_configs(config: ml_collections.ConfigDict, workdir: str, cli_keys=()):
    """Expands `config.stages` into (name, workdir, config) triples, in order.

    Each stage is a ConfigDict of overrides applied to the base config, plus an
    optional `init_from_stage` naming an earlier stage whose checkpoint
    initialises `init_from.parts`. With no stages, the config is one run in
    `workdir` itself.

    Args:
      config: the experiment's config.
      workdir: the experiment's workdir; stage `s` runs in `workdir/s`.
      cli_keys: dotted keys set on the command line (`--config.num_epochs=1` ->
        'num_epochs'). They win over a stage's own value for the same key, so a
        command-line value applies to every stage; `--config.stages.NAME.KEY=...`
        sets one stage's value.
    """
    if not config.stages:
        return [("run", workdir, config)]
    names = list(config.stages.keys())
    parents = {name: config.stages[name].get("init_from_stage", "") for name in names}
    for name, parent in parents.items():
        if parent and parent not in names:
            raise errors.UserError(
                f"stage {name!r} starts from {parent!r}, which is not a stage; use one of "
                f"{', '.join(names)}."
            )
    # Parents before children; otherwise in name order (ConfigDict keys are sorted).
    order, todo = [], list(names)
    while todo:
        ready = [n for n in todo if not parents[n] or parents[n] in order]
        if not ready:
            raise errors.UserError(f"config.stages {todo} start from each other in a cycle.")
        order.append(ready[0])
        todo.remove(ready[0])
    cli_keys = {k for k in cli_keys if not k.startswith("stages.")}
    out = []
    for name in order:
        overrides = config.stages[name].to_dict()
        c = copy.deepcopy(config)
        with c.unlocked():
            c.stages = ml_collections.ConfigDict()
        parent = overrides.pop("init_from_stage", "")
        _apply_overrides(c, overrides, f"stages.{name}", "", cli_keys)
        if parent:  # The chain itself, not an overlay: a command-line init_from.path is
            c.init_from.path = f"{workdir}/{parent}"  # for the stages without a parent.
        out.append((name, f"{workdir}/{name}", c))
    return out


def _apply_overrides(config, overrides: dict, prefix: str, path: str, cli_keys: set):
    for key, value in overrides.items():
        if key not in config:
            raise errors.UserError(
                f"unknown config key {prefix}.{key}; stage overrides may only set keys that "
                "config_lib.base_config() has."
            )
        if isinstance(value, dict):
            _apply_overrides(config[key], value, f"{prefix}.{key}", f"{path}{key}.", cli_keys)
        elif f"{path}{key}" not in cli_keys:
            config[key] = value


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
    _check_choice("task", config.task, TASKS)
    _check_size("input_size", config.input_size)
    out_h, out_w = _check_size("resizer.output_size", config.resizer.output_size)
    _check_choice("resizer.kind", config.resizer.kind, ("learned", *resizers.FIXED_METHODS))
    _check_choice("model.name", config.model.name, models.available_classifiers())
    min_size = models.MIN_INPUT_SIZE[config.model.name]
    if min(out_h, out_w) < min_size:
        raise errors.UserError(
            f"config.resizer.output_size={tuple(config.resizer.output_size)} is smaller than "
            f"{config.model.name}'s minimum input {min_size}x{min_size}; raise the output size."
        )
    _check_choice("model.dtype", config.model.dtype, DTYPES)
    _check_choice("optim.schedule", config.optim.schedule, SCHEDULES)
    _check_choice("resizer.norm", config.resizer.norm, resizers.NORMS)
    _check_choice("data.aspect", config.data.aspect, aspect_ratio.MODES)
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
    _check_choice("resizer.interpolation", config.resizer.interpolation, resizers.FIXED_METHODS)
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
    from learned_resize import data_sources  # (it reads base_config's defaults)

    data_sources.data_options(config)  # config.data's values: checked where they are read
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
    bad_parts = set(config.init_from.parts) - {"classifier", "resizer", "score_head"}
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


# Workdirs this process will train, in stage order (train.preflight records each), so that
# a later stage's init_from may name an earlier stage's run before it has a checkpoint.
_PLANNED_RUNS: dict[str, ml_collections.ConfigDict] = {}


def _run_key(path) -> str:
    from learned_resize import workdir as workdir_lib

    return os.fspath(workdir_lib.as_path(path)).rstrip("/")


def plan_run(workdir, config: ml_collections.ConfigDict) -> None:
    """Records that this process trains `config` in `workdir` (see check_init_sources)."""
    _PLANNED_RUNS[_run_key(workdir)] = config


def _source_meta(key: str, path: str) -> dict:
    """The model meta of the newest checkpoint under `path` (config.init_from.`key`)."""
    from learned_resize import checkpoints
    from learned_resize import workdir as workdir_lib

    if not workdir_lib.as_path(path).exists():
        raise errors.UserError(
            f"config.init_from.{key}={path} does not exist; give the workdir of a finished run "
            "(or its checkpoints/ directory), or '' to start from scratch."
        )
    try:
        directory, steps = checkpoints.checkpoint_steps(path)
    except errors.UserError:
        raise errors.UserError(
            f"config.init_from.{key}={path} holds no finished checkpoint; train a run there "
            "first or give the workdir of one that has a checkpoints/ directory."
        ) from None
    meta = workdir_lib.read_json(directory / str(steps[0]) / "meta" / "metadata")
    if not isinstance(meta, dict):
        raise errors.UserError(
            f"config.init_from.{key}={path}: the newest checkpoint (step {steps[0]}) has no "
            "readable meta/metadata; give the workdir of an intact run."
        )
    return meta


def check_init_sources(config: ml_collections.ConfigDict, workdir) -> None:
    """Refuses an init_from source that will not give the requested parts: a missing path, a
    path without a finished checkpoint, or a checkpoint of another model. Reads only the
    small meta files. Skipped when `workdir` resumes from its own checkpoints (init_from is
    then not read); a source that is an earlier stage of this process is judged by that
    stage's config."""
    from learned_resize import checkpoints
    from learned_resize import workdir as workdir_lib

    init = config.init_from
    own = workdir_lib.as_path(workdir) / checkpoints.CHECKPOINT_DIR
    if own.is_dir() and any(p.name.isdigit() for p in own.iterdir()):
        return
    sources = []
    if init.path:
        parts = [p for p in init.parts if p != "resizer" or not init.resizer_path]
        sources.append(("path", init.path, parts))
    if init.resizer_path:
        sources.append(("resizer_path", init.resizer_path, ["resizer"]))
    expected = checkpoints.model_meta(config)
    for key, path, parts in sources:
        planned = _PLANNED_RUNS.get(_run_key(path))
        if planned is not None and not workdir_lib.as_path(path).exists():
            found = checkpoints.model_meta(planned)
        else:
            found = _source_meta(key, path)
        found = {"resizer_norm": "batch", **found}  # (checkpoints saved before the key)
        if "resizer" in parts and found.get("resizer") != "learned":
            raise errors.UserError(
                f"config.init_from.{key}={path} has no learned resizer (its resizer is "
                f"{found.get('resizer')!r}); give a run with config.resizer.kind='learned' or "
                "drop 'resizer' from config.init_from.parts."
            )
        keys = ["channels"]
        keys += ["model"] if "classifier" in parts else []
        keys += ["task", "num_classes"] if "score_head" in parts else []
        keys += ["resizer_filters", "resizer_blocks", "resizer_norm"] if "resizer" in parts else []
        diffs = [f"{k}={found.get(k)!r} (this config: {expected[k]!r})" for k in keys]
        diffs = [d for k, d in zip(keys, diffs) if found.get(k) != expected[k]]
        if diffs:
            raise errors.UserError(
                f"config.init_from.{key}={path} is a checkpoint of another model "
                f"({', '.join(diffs)}); give a run of this model or change the config to match."
            )
