r"""IQA pipeline check on the offline AVA-format STAND-IN (not AVA: no human scores).

    python -m learned_resize.main --config=configs/ava_standin.py --workdir=workdirs/ava_standin

`ava_standin` is built by the project from photos shipped inside scikit-image, each
cropped and distorted (blur, noise, JPEG, contrast) with a known strength that is
turned into a 1..10 vote histogram, written as an AVA-format folder and prepared by
the same `ava` builder (800 train / 200 test). It exercises the whole IQA path
(builder, pipeline, score head, EMD loss, PLCC/SRCC) offline; its numbers say
nothing about aesthetic quality. Two stages from scratch with a small CNN:
  bilinear  fixed bilinear 96 -> 32;
  learned   learned resizer (n=16, r=1) 96 -> 32.
Takes a few minutes on a 2-core CPU; results in the README.
"""

from learned_resize.config import defaults


def get_config():
    config = defaults.base_config()
    config.task = "iqa"
    config.data.name = "ava_standin"
    config.data.channels = 3
    config.data.num_classes = 10
    config.data.crop = "inception"
    config.data.min_area = 0.5
    config.data.eval_crop_fraction = 1.0
    config.input_size = (96, 96)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (32, 32)

    config.model.name = "small_cnn"
    config.model.head_dropout = 0.5

    config.batch_size = 32
    config.optim.learning_rate = 0.05
    config.optim.reference_batch_size = 32
    config.optim.schedule = "cosine"
    config.optim.label_smoothing = 0.0

    config.num_epochs = 15.0
    config.log_every_steps = 50
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 200

    config.stages.bilinear = {}
    config.stages.learned = {"resizer": {"kind": "learned"}}
    return config
