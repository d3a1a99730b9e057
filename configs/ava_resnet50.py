r"""AVA image quality, ResNet-50: the paper's IQA setting (NIMA-style EMD training).

    python -m learned_resize.main --config=configs/ava_resnet50.py --workdir=DIR \
        --config.init_from.path=IMAGENET_WORKDIR/baseline

Fine-tunes an ImageNet classification run's ResNet-50 (its `classifier` part; the
1000-class head is left out) with a 10-bin score head (dropout 0.75 + dense +
softmax) and the EMD loss (r=2). Two stages, each from the same ImageNet checkpoint:
  bilinear  fixed bilinear 224 -> 224, the baseline;
  learned   a fresh learned resizer (n=16, r=1) 448 -> 224, trained jointly.
Reports PLCC, SRCC, EMD and binary accuracy (mean score > 5) of the test split.
Needs AVA prepared by the project's `ava` builder from its manual dir (AVA.txt +
images/, see README); `python -m learned_resize.datasets.prepare --dataset=ava`.
Time: hours on one accelerator host; not run here (AVA cannot be downloaded here).
"""

from learned_resize import config_lib


def get_config():
    config = config_lib.base_config()
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
    config.data.num_workers = 16
    config.input_size = (224, 224)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (224, 224)

    config.model.name = "resnet50"
    config.model.dtype = "bfloat16"
    config.model.head_dropout = 0.75

    config.batch_size = 256
    config.optim.learning_rate = 0.005  # the paper's fine-tuning rate
    config.optim.reference_batch_size = 256
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.94
    config.optim.decay_epochs = 2.0
    config.optim.label_smoothing = 0.0

    config.num_epochs = 20.0
    config.log_every_steps = 100
    config.eval_every_steps = 2000
    config.checkpoint_every_steps = 2000
    config.init_from.parts = ("classifier",)

    config.stages.bilinear = {}
    config.stages.learned = {
        "input_size": (448, 448),
        "resizer": {"kind": "learned"},
    }
    return config
