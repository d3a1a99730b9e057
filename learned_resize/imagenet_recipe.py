"""The paper's ImageNet recipe (Talebi & Milanfar 2021, sec. 4), shared by `configs/imagenet_*`.

Two stages, each run in `workdir/<stage>`:

  baseline  the classifier from scratch behind a fixed bilinear resize to 224x224
            (the standard pipeline: the input pipeline already crops to 224, so the
            resize is the identity), SGD momentum 0.9, label smoothing 0.1, lr 0.05
            per 256 images decayed x0.94 every 2 epochs;
  learned   the baseline's classifier plus a fresh learned resizer (n=16, r=1)
            448x448 -> 224x224, trained jointly with lr 0.005 per 256 images.

Everything the ablations sweep is an explicit key of the `learned` stage, so it can
be overridden on the command line:

    --config.stages.learned.input_size='(368, 368)'        # 224, 256, 320, 368 or 448
    --config.stages.learned.resizer.num_filters=32         # n
    --config.stages.learned.resizer.num_res_blocks=2       # r

(`launch/sweep.py` runs such a grid and collects the results table.) To start the
`learned` stage from a baseline trained elsewhere (e.g. one baseline shared by a
whole sweep): `--stages=learned --config.stages.learned.init_from_stage=
--config.init_from.path=BASELINE_WORKDIR`.

Transfer (the paper's generalisation experiment: a resizer trained with one backbone,
fine-tuned about 4 epochs with another): run this backbone's `learned` stage with the
other run's resizer,

    --stages=learned --config.init_from.resizer_path=OTHER_WORKDIR/learned \
        --config.stages.learned.num_epochs=4

The classifier then comes from this workdir's `baseline`, the resizer from the other
run (same n and r), and both are fine-tuned jointly.

Where this recipe departs from the paper (learning rate per 256 images, warm-up, weight
decay, epochs, softmax cross-entropy, bf16, the baseline's input resize), and why: the
README's "Departures from the paper"; tests/test_optim.py pins every value.
"""

import ml_collections

from learned_resize import config_lib

# ILSVRC-2012 training and validation set sizes, for time estimates.
NUM_TRAIN_IMAGES = 1_281_167
NUM_EVAL_IMAGES = 50_000


def imagenet_config(
    model_name: str,
    *,
    image_size: int = 224,
    resizer_input_size: int = 448,
    batch_size: int = 1024,
    baseline_epochs: float = 90.0,
    learned_epochs: float = 20.0,
    weight_decay: float = 4e-5,
    warmup_epochs: float = 2.0,
) -> ml_collections.ConfigDict:
    """The two-stage ImageNet config for the registered classifier `model_name`.

    Args:
      model_name: a name from `learned_resize.models.available_classifiers()`.
      image_size: the classifier's input (224 in the paper).
      resizer_input_size: the learned resizer's input in the `learned` stage (the
        paper tries 224, 256, 320, 368 and 448).
      batch_size: global batch; learning rates scale linearly from a batch of 256.
      baseline_epochs: length of the `baseline` stage.
      learned_epochs: length of the `learned` (joint fine-tuning) stage.
      weight_decay: L2 on conv and dense kernels.
      warmup_epochs: linear warm-up of the `baseline` stage (large batches need it);
        the fine-tuning stage starts at its full rate.

    Returns:
      A ConfigDict; `main.py` locks it, so misspelt overrides fail early.
    """
    config = config_lib.base_config()
    config.data.name = "imagenet2012"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.channels = 3
    config.data.num_classes = 1000
    config.data.crop = "inception"  # random-resized crop, area in [min_area, 1], aspect 3/4..4/3
    config.data.min_area = 0.08
    config.data.flip = True
    config.data.eval_crop_fraction = 0.875  # resize the shorter side to size/0.875, centre crop
    config.data.num_workers = -1  # auto: the host's CPUs but two on TPU/GPU, 0 on CPU
    config.input_size = (image_size, image_size)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (image_size, image_size)
    config.resizer.num_filters = 16
    config.resizer.num_res_blocks = 1

    config.model.name = model_name
    config.model.dtype = "bfloat16"  # params and BN statistics stay float32

    config.batch_size = batch_size
    config.optim.learning_rate = 0.05
    config.optim.reference_batch_size = 256
    config.optim.momentum = 0.9
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.94
    config.optim.decay_epochs = 2.0
    config.optim.warmup_epochs = warmup_epochs
    config.optim.weight_decay = weight_decay
    config.optim.label_smoothing = 0.1

    config.num_epochs = baseline_epochs
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 2000
    config.keep_checkpoints = 3

    config.stages.baseline = {}
    config.stages.learned = {
        "init_from_stage": "baseline",
        "input_size": (resizer_input_size, resizer_input_size),
        "num_epochs": learned_epochs,
        "resizer": {"kind": "learned", "num_filters": 16, "num_res_blocks": 1},
        "optim": {"learning_rate": 0.005, "warmup_epochs": 0.0},
    }
    return config
