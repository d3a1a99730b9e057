r"""AVA image quality: the paper's IQA protocol (NIMA-style EMD training), one backbone.

    python -m learned_resize.main --config=configs/ava.py:resnet50 --workdir=DIR \
        --config.init_from.path=IMAGENET_WORKDIR/baseline

`configs/ava_resnet50.py`, `ava_mobilenet_v2.py` and `ava_inception_v2.py` are links
to this file: with no `:backbone` the backbone comes from the file name.

Three stages, in order:
  bilinear  the ImageNet run's backbone (its `classifier` part; the 1000-class head
            is left out) + a fresh 10-bin score head (dropout 0.75 + dense + softmax),
            fixed bilinear 224 -> 224, EMD loss (r=2): the baseline;
  bicubic   the same from the same ImageNet checkpoint, fixed bicubic: the paper's
            second baseline;
  learned   starts from the trained `bilinear` stage (backbone and score head, as the
            paper does) and adds a fresh learned resizer (n=16, r=1) 448 -> 224,
            trained jointly.
Reports PLCC, SRCC, EMD and binary accuracy (mean score > 5) of the test split.
Needs AVA prepared by the project's `ava` builder from its manual dir (AVA.txt +
images/, see docs/iqa.md); `python -m learned_resize.data.prepare --dataset=ava`.
Time: hours on one accelerator host; not run here (AVA cannot be downloaded here).
"""

import os

from learned_resize.config import defaults

BACKBONES = ("resnet50", "mobilenet_v2", "inception_v2")


def _backbone_from_file_name() -> str:
    name = os.path.splitext(os.path.basename(__file__))[0]  # ava_resnet50 -> resnet50
    return name.removeprefix("ava_") if name != "ava" else "resnet50"


def get_config(backbone: str = ""):
    backbone = backbone or _backbone_from_file_name()
    if backbone not in BACKBONES:
        raise ValueError(f"configs/ava.py takes a backbone of {BACKBONES}, not {backbone!r}.")
    config = defaults.base_config()
    config.task = "iqa"
    config.data.name = "ava"
    config.data.train_split = "train"
    config.data.eval_split = "test"
    config.data.channels = 3
    config.data.num_classes = 10  # score bins 1..10
    config.data.crop = "inception"
    config.data.min_area = 0.25
    config.data.flip = True
    config.data.eval_crop_fraction = 0.875
    config.data.num_workers = -1  # auto: the host's CPUs but two on TPU/GPU, 0 on CPU
    config.input_size = (224, 224)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (224, 224)
    config.resizer.num_filters = 16
    config.resizer.num_res_blocks = 1

    config.model.name = backbone
    config.model.dtype = "bfloat16"
    config.model.head_dropout = 0.75

    config.batch_size = 256
    config.optim.learning_rate = 0.005  # the paper's fine-tuning rate
    config.optim.reference_batch_size = 256
    config.optim.momentum = 0.9
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.94
    config.optim.decay_epochs = 2.0
    config.optim.label_smoothing = 0.0

    config.num_epochs = 20.0
    config.log_every_steps = 100
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    config.init_from.parts = ("classifier",)  # the ImageNet run: its backbone only

    config.stages.bilinear = {}
    config.stages.bicubic = {"resizer": {"kind": "bicubic"}}
    config.stages.learned = {
        "init_from_stage": "bilinear",
        "init_from": {"parts": ("classifier", "score_head")},
        "input_size": (448, 448),
        "resizer": {"kind": "learned"},
    }
    return config
