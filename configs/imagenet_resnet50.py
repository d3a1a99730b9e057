r"""ImageNet, ResNet-50: the paper's two-stage recipe (Talebi & Milanfar 2021, sec. 4).

    python -m learned_resize.main --config=configs/imagenet_resnet50.py --workdir=gs://BUCKET/r50

Stages (each in `workdir/<stage>`):
  baseline  ResNet-50 from scratch behind bilinear 224 -> 224 (i.e. the standard
            pipeline), lr 0.05 per 256 images, x0.94 every 2 epochs, 90 epochs;
  learned   from `baseline`'s classifier, a fresh learned resizer (n=16, r=1)
            448 -> 224 trained jointly, lr 0.005 per 256, 20 epochs.
Run one stage with --stages=learned; pick another resizer input with
--config.stages.learned.input_size='(368, 368)' (the paper tries 224, 256, 320, 368, 448).
Expected (paper, second-hand figures): top-1 error 24.7% (baseline) -> 23.0% (learned, 368).
Needs TFDS `imagenet2012` prepared under --config.data.data_dir (see README).
Time: see the README's performance section for the measured FLOPs and the estimate.
"""

from learned_resize import config_lib


def get_config():
    config = config_lib.base_config()
    config.data.name = "imagenet2012"
    config.data.train_split = "train"
    config.data.eval_split = "validation"
    config.data.channels = 3
    config.data.num_classes = 1000
    config.data.crop = "inception"
    config.data.min_area = 0.08
    config.data.flip = True
    config.data.eval_crop_fraction = 0.875
    config.data.num_workers = 16
    config.input_size = (224, 224)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (224, 224)
    config.resizer.num_filters = 16
    config.resizer.num_res_blocks = 1

    config.model.name = "resnet50"
    config.model.dtype = "bfloat16"

    config.batch_size = 1024
    config.optim.learning_rate = 0.05
    config.optim.reference_batch_size = 256
    config.optim.schedule = "exponential"
    config.optim.decay_rate = 0.94
    config.optim.decay_epochs = 2.0
    config.optim.warmup_epochs = 2.0
    config.optim.weight_decay = 4e-5
    config.optim.label_smoothing = 0.1

    config.num_epochs = 90.0
    config.log_every_steps = 100
    config.eval_every_steps = 5000
    config.checkpoint_every_steps = 2000
    config.keep_checkpoints = 3

    config.stages.baseline = {}
    config.stages.learned = {
        "init_from_stage": "baseline",
        "input_size": (448, 448),
        "num_epochs": 20.0,
        "resizer": {"kind": "learned"},
        "optim": {"learning_rate": 0.005, "warmup_epochs": 0.0},
    }
    return config
