"""Shared configuration pieces: the full key set, validation, and stage handling.

Every config file in `configs/` starts from `base_config()`, which holds every key
the trainer reads, and then locks the result. A misspelt `--config.key=value`
override therefore fails in `ml_collections` before anything is built, and
`validate_config` checks values (sizes, batch divisibility, names) before any
compilation.
"""

import copy

import jax
import ml_collections

from learned_resize import models, resizers

TASKS = ("classification", "iqa")
SCHEDULES = ("constant", "cosine", "exponential")
DTYPES = ("float32", "bfloat16")


def base_config() -> ml_collections.ConfigDict:
    """Returns a config with every key the trainer reads, set to neutral defaults."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.task = "classification"

    c.data = ml_collections.ConfigDict()
    c.data.name = "fashion_mnist_local"
    c.data.data_dir = ""  # '' = $TFDS_DATA_DIR or ~/tensorflow_datasets
    c.data.manual_dir = ""
    c.data.train_split = "train"
    c.data.eval_split = "test"
    c.data.channels = 3
    c.data.num_classes = 10
    c.data.crop = "inception"  # 'inception' (random-resized crop) or 'none'
    c.data.min_area = 0.08
    c.data.flip = True
    c.data.eval_crop_fraction = 0.875
    c.data.num_workers = -1  # grain worker processes; -1: auto (input_pipeline.resolve_num_workers)
    c.data.jpeg_draft = True  # decode JPEGs at a reduced DCT scale where the crop allows
    c.data.prefetch = 2
    # Per-channel normalisation applied on device to images scaled to [0, 1].
    c.data.mean = (0.485, 0.456, 0.406)
    c.data.std = (0.229, 0.224, 0.225)

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

    c.model = ml_collections.ConfigDict()
    c.model.name = "resnet50"
    c.model.dtype = "float32"  # compute dtype; params and BN statistics stay float32
    c.model.head_dropout = 0.0  # IQA score head only

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 0.05  # for a batch of `reference_batch_size`; scaled linearly
    c.optim.reference_batch_size = 256
    c.optim.momentum = 0.9
    c.optim.nesterov = False
    c.optim.weight_decay = 0.0  # L2 on conv/dense kernels
    c.optim.schedule = "exponential"
    c.optim.decay_rate = 0.94
    c.optim.decay_epochs = 2.0
    c.optim.warmup_epochs = 0.0
    c.optim.label_smoothing = 0.1
    c.optim.grad_clip_norm = 0.0  # 0 disables clipping

    c.batch_size = 256  # global, over all devices and processes
    c.num_epochs = 1.0
    c.num_train_steps = -1  # > 0 overrides num_epochs
    c.log_every_steps = 50
    c.eval_every_steps = 1000  # also at the end; 0 = only at the end
    c.checkpoint_every_steps = 1000  # also at the end and on SIGTERM
    c.keep_checkpoints = 3
    c.num_eval_images = 8  # rows of the PNG grid written at each eval

    # Initialise parts of the model from another run (stage 2 of the paper).
    c.init_from = ml_collections.ConfigDict()
    c.init_from.path = ""  # a workdir or a checkpoint directory
    c.init_from.parts = ("classifier",)  # any of 'classifier', 'resizer'
    c.init_from.resizer_path = ""  # optional second source for the resizer (transfer)

    # Optional multi-stage experiment: stage name -> overrides. See `stage_configs`.
    c.stages = ml_collections.ConfigDict()
    return c


def stage_configs(config: ml_collections.ConfigDict, workdir: str):
    """Expands `config.stages` into (name, workdir, config) triples, in order.

    Each stage is a ConfigDict of overrides applied to the base config, plus an
    optional `init_from_stage` naming an earlier stage whose checkpoint
    initialises `init_from.parts`. With no stages, the config is one run in
    `workdir` itself.
    """
    if not config.stages:
        return [("run", workdir, config)]
    names = list(config.stages.keys())
    parents = {name: config.stages[name].get("init_from_stage", "") for name in names}
    for name, parent in parents.items():
        if parent and parent not in names:
            raise ValueError(
                f"Stage {name!r} starts from {parent!r}, which is not a stage; use one of "
                f"{', '.join(names)}."
            )
    # Parents before children; otherwise in name order (ConfigDict keys are sorted).
    order, todo = [], list(names)
    while todo:
        ready = [n for n in todo if not parents[n] or parents[n] in order]
        if not ready:
            raise ValueError(f"config.stages {todo} start from each other in a cycle.")
        order.append(ready[0])
        todo.remove(ready[0])
    out = []
    for name in order:
        overrides = config.stages[name].to_dict()
        c = copy.deepcopy(config)
        with c.unlocked():
            c.stages = ml_collections.ConfigDict()
        parent = overrides.pop("init_from_stage", "")
        if parent:
            overrides.setdefault("init_from", {})["path"] = f"{workdir}/{parent}"
        _apply_overrides(c, overrides, prefix=f"stages.{name}")
        out.append((name, f"{workdir}/{name}", c))
    return out


def _apply_overrides(config, overrides: dict, prefix: str):
    for key, value in overrides.items():
        if key not in config:
            raise ValueError(
                f"Unknown config key {prefix}.{key}; stage overrides may only set existing keys."
            )
        if isinstance(value, dict):
            _apply_overrides(config[key], value, f"{prefix}.{key}")
        else:
            config[key] = value


def _check_size(name: str, size) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ValueError(f"config.{name} must be a pair (height, width), got {size!r}.") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"config.{name} must be positive, got {size!r}; use e.g. (224, 224).")
    return h, w


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ValueError with one sentence for any bad value, before anything is built."""
    if config.task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {config.task!r}.")
    in_h, in_w = _check_size("input_size", config.input_size)
    out_h, out_w = _check_size("resizer.output_size", config.resizer.output_size)
    kinds = ("learned", *resizers.FIXED_METHODS)
    if config.resizer.kind not in kinds:
        raise ValueError(
            f"config.resizer.kind must be one of {', '.join(kinds)}, got {config.resizer.kind!r}."
        )
    if config.model.name not in models.available_classifiers():
        raise ValueError(
            f"Unknown classifier config.model.name={config.model.name!r}; choose one of "
            f"{', '.join(models.available_classifiers())}."
        )
    min_size = models.MIN_INPUT_SIZE[config.model.name]
    if min(out_h, out_w) < min_size:
        raise ValueError(
            f"config.resizer.output_size={tuple(config.resizer.output_size)} is smaller than "
            f"{config.model.name}'s minimum input {min_size}x{min_size}; raise the output size."
        )
    if config.model.dtype not in DTYPES:
        raise ValueError(f"config.model.dtype must be one of {DTYPES}, got {config.model.dtype!r}.")
    if config.optim.schedule not in SCHEDULES:
        raise ValueError(
            f"config.optim.schedule must be one of {SCHEDULES}, got {config.optim.schedule!r}."
        )
    if config.batch_size <= 0:
        raise ValueError(f"config.batch_size must be positive, got {config.batch_size}.")
    n = jax.device_count()
    if config.batch_size % n:
        raise ValueError(
            f"config.batch_size={config.batch_size} is not divisible by the {n} devices; "
            f"use a multiple of {n}."
        )
    if config.num_train_steps <= 0 and config.num_epochs <= 0:
        raise ValueError("Set config.num_epochs or config.num_train_steps to a positive value.")
    if config.data.channels not in (1, 3):
        raise ValueError(f"config.data.channels must be 1 or 3, got {config.data.channels}.")
    for key in ("mean", "std"):
        if len(config.data[key]) != config.data.channels:
            raise ValueError(
                f"config.data.{key} has {len(config.data[key])} values but "
                f"config.data.channels={config.data.channels}; give one per channel."
            )
    bad_parts = set(config.init_from.parts) - {"classifier", "resizer"}
    if bad_parts:
        raise ValueError(
            "config.init_from.parts may only name 'classifier' and 'resizer', "
            f"got {sorted(bad_parts)}."
        )
    del in_h, in_w
