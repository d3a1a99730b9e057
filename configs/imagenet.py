r"""ImageNet: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4), one backbone.

    python -m learned_resize.main --config=configs/imagenet.py:resnet50 --workdir=gs://BUCKET/r50
    python -m learned_resize.main --config=configs/imagenet_resnet50.py --workdir=gs://BUCKET/r50

`configs/imagenet_<backbone>.py` are links to this file: with no `:backbone` the
backbone comes from the file name. Three stages, each run in `workdir/<stage>`:

  baseline  the classifier from scratch behind a fixed bilinear resize to 224x224 (the
            input pipeline already crops to 224, so the resize is the identity);
  bicubic   the control: from `baseline`, the classifier fine-tuned behind a fixed
            bicubic resize 448x448 -> 224x224 (not antialiased, as the bilinear one)
            with the learned stage's budget, so that the learned resizer's gain is
            measured against a second fixed kernel at the same input size;
  learned   the baseline's classifier plus a fresh learned resizer (n=16, r=1)
            448x448 -> 224x224, trained jointly.
`--stages=baseline,learned` skips the control.

Every value is set below. The ablations are overrides of the `learned` stage:
    --config.stages.learned.input_size='(368, 368)'    # the paper's 224, 256, 320, 368, 448
    --config.stages.learned.resizer.num_filters=32     # n
    --config.stages.learned.resizer.num_res_blocks=2   # r
(`launch/sweep.py` runs such a grid.) Start `learned` from a baseline trained elsewhere:
`--stages=learned --config.stages.learned.init_from_stage= --config.init_from.path=DIR`.
Transfer (a resizer trained with another backbone, fine-tuned ~4 epochs with this one):
`--stages=learned --config.init_from.resizer_path=OTHER/learned
--config.stages.learned.num_epochs=4`.

Departures from the paper (docs/departures.md; tests/test_optim.py pins
each value): learning rates are the paper's figures *per 256 images*, scaled linearly with
the batch (the paper gives no batch size); 2 warm-up epochs in `baseline` (lr 0.2 at
batch 1024 from scratch diverges without); weight decay 4e-5 on kernels (not stated,
TF-slim's default); 90 + 20 epochs (not stated); softmax cross-entropy (the text mentions
a sigmoid); bf16 compute; the baseline's resize is the input pipeline's.

Per backbone: the paper's figures (second-hand, docs/PAPERS.md), XLA forward GFLOPs per image
at batch 1 in eval mode bilinear -> learned (`python -m learned_resize.tools.flops`), and a
compute-bound lower bound on the time of baseline + learned at 40-50% MFU (method:
`learned_resize/tools/flops.py`). No ImageNet run was possible here: these are estimates.

  backbone         paper                        GFLOPs        TPU v4-8          8x A100
  resnet50         top-1 err 24.7->23.0% (368)  8.13->10.25   1.4-1.8h+24-30m   38-47m+11-13m
  densenet121      top-5 err 12.8->10.8%        5.81->7.93    1.0-1.3h+18-23m   27-34m+8-10m
  inception_v2     a gain, no figures           3.78->5.90    40-49m+14-17m     17-22m+6-8m
  mobilenet_v2     a gain, no figures           0.72->2.84    8-9m+7-8m         3-4m+3-4m
  efficientnet_b0  mentioned, no figures        0.94->3.07    10-12m+7-9m       4-5m+3-4m
(times: baseline + learned stage)

For orientation, reference weights trained with their own recipes: torchvision's
MobileNet-v2 71.9% top-1 (300 epochs), DenseNet-121 74.4%; TF-slim's Inception-v2 73.9%;
EfficientNet-B0 about 77% (RMSProp, AutoAugment, 350 epochs). 90 epochs of this SGD recipe
land lower. On the mobile networks the resizer (0.99 GMACs at 448 -> 224) costs more than
the network: the paper's point is accuracy per input, not FLOPs.
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see docs/imagenet.md).
"""

import os

from learned_resize import models
from learned_resize.config import defaults


def _backbone_from_file_name() -> str:
    name = os.path.splitext(os.path.basename(__file__))[0]  # imagenet_resnet50 -> resnet50
    return name.removeprefix("imagenet_") if name != "imagenet" else "resnet50"


def get_config(backbone: str = ""):
    backbone = backbone or _backbone_from_file_name()
    if backbone not in models.available_classifiers():
        raise ValueError(
            f"configs/imagenet.py takes one of {models.available_classifiers()}, not {backbone!r}."
        )
    config = defaults.base_config()
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
    config.input_size = (224, 224)

    config.resizer.kind = "bilinear"  # TF-style, not antialiased (config/defaults.py's default)
    config.resizer.output_size = (224, 224)
    config.resizer.num_filters = 16  # n
    config.resizer.num_res_blocks = 1  # r

    config.model.name = backbone
    config.model.dtype = "bfloat16"  # compute; params and BN statistics stay float32

    config.batch_size = 1024
    config.optim.learning_rate = 0.05  # per 256 images: 0.2 at batch 1024
    config.optim.reference_batch_size = 256
    config.optim.momentum = 0.9
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.94
    config.optim.decay_epochs = 2.0
    config.optim.warmup_epochs = 2.0
    config.optim.weight_decay = 4e-5  # L2 on conv and dense kernels only
    config.optim.label_smoothing = 0.1

    config.num_epochs = 90.0
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 2000
    config.keep_checkpoints = 3

    config.stages.baseline = {}
    config.stages.bicubic = {  # the same input, budget and schedule as `learned`
        "init_from_stage": "baseline",
        "input_size": (448, 448),
        "num_epochs": 20.0,
        "resizer": {"kind": "bicubic"},  # antialias: the base config's False, as bilinear
        "optim": {"learning_rate": 0.005, "warmup_epochs": 0.0},  # per 256 images
    }
    config.stages.learned = {
        "init_from_stage": "baseline",
        "input_size": (448, 448),
        "num_epochs": 20.0,
        "resizer": {"kind": "learned", "num_filters": 16, "num_res_blocks": 1},
        "optim": {"learning_rate": 0.005, "warmup_epochs": 0.0},  # per 256 images
    }
    return config
