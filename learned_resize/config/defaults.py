"""Every config key the trainer reads, with its default, and the names each key accepts.

Every config file in `configs/` starts from `base_config()` and then locks the
result, so a misspelt `--config.key=value` override fails in `ml_collections`
before anything is built. The tuples below are the vocabulary of the choice keys;
the modules that implement them (resampling, resizers, models, aspect_ratio,
precision, data sources) keep their own lists, and tests/config/test_vocabulary.py
checks that the two agree. This package imports nothing of models/ or data/.
"""

import ml_collections

TASKS = ("classification", "iqa")
SCHEDULES = ("constant", "cosine", "exponential")
# "auto": bfloat16 on TPUs and GPUs that compute it natively (runtime/precision.py).
DTYPES = ("auto", "float32", "bfloat16")
# Fixed resampling methods (models/resampling.py); a resizer is one of these or 'learned'.
FIXED_METHODS = ("bilinear", "bicubic", "lanczos3", "lanczos5", "area", "nearest")
NORMS = ("batch", "group", "none")  # the learned resizer's normalisation (models/resizers.py)
ASPECT_MODES = ("square", "pad")  # data/aspect_ratio.py
CROPS = ("inception", "none")  # data/sources.py
# Classifiers by name (models/__init__.py) -> the smallest square input each accepts
# (its total stride, or what its valid-padded layers need).
MIN_INPUT_SIZE = {
    "small_cnn": 4,
    "resnet18": 32,
    "resnet34": 32,
    "resnet50": 32,
    "resnet101": 32,
    "densenet121": 32,
    "mobilenet_v2": 32,
    "inception_v2": 32,
    **{f"efficientnet_b{i}": 32 for i in range(8)},
}
INIT_PARTS = ("classifier", "resizer", "score_head")


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
    d.num_workers = -1  # grain worker processes; -1: auto (data/sources.py)
    d.jpeg_draft = True  # decode JPEGs at a reduced DCT scale where the crop allows
    d.prefetch = 2
    # 'square': crops to input_size (the paper's); 'pad': keeps the aspect ratio, fits
    # the image in input_size and pads with black (learned_resize/data/aspect_ratio.py).
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
    c.resizer.kind = "bilinear"  # 'learned' or one of FIXED_METHODS
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
    # Compute dtype ("auto": runtime/precision.py); params and BN statistics stay float32.
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
