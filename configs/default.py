r"""Default: the paper's effect on real data, on a laptop CPU (Fashion-MNIST, small CNN).

    python -m learned_resize.main --config=configs/default.py --workdir=workdirs/default

Runs four stages in `workdir/<stage>` and prints a top-1/top-5 table:
  baseline      small CNN behind a fixed bilinear 28x28 -> 8x8 resize, from scratch;
  learned       from `baseline`: jointly fine-tunes the classifier with a fresh
                learned resizer (n=16, r=1) 28x28 -> 8x8;
  bilinear_ft   from `baseline`: the control, fine-tunes the classifier behind the
                same bilinear resize with the same extra budget;
  bicubic_ft    from `baseline`: the second control, the same behind a fixed bicubic
                resize (Keys, a = -0.5; not antialiased, like the bilinear one).
Stages run parents first, then in name order (baseline, bicubic_ft, bilinear_ft,
learned), and the table lists them in that order.
At 8x8 the bilinear resize (no antialiasing, as TF's default that the paper's
baselines use) drops most of the 28x28 image, so there is something to learn.
Fashion-MNIST is prepared from Debian's `dataset-fashion-mnist` on first use.
Measured results and wall time on a 2-core CPU: see docs/results.md.
"""

from learned_resize.config import defaults


def get_config():
    config = defaults.base_config()
    config.seed = 0
    config.data.name = "fashion_mnist_local"
    config.data.channels = 1
    config.data.num_classes = 10
    config.data.crop = "none"  # 28x28 digits-like images: no random-resized crop
    config.data.flip = True
    config.data.eval_crop_fraction = 1.0
    config.data.mean = (0.286,)
    config.data.std = (0.353,)
    config.input_size = (28, 28)

    config.resizer.kind = "bilinear"
    config.resizer.output_size = (8, 8)
    config.resizer.num_filters = 16
    config.resizer.num_res_blocks = 1

    config.model.name = "small_cnn"

    config.batch_size = 128
    config.optim.learning_rate = 0.1
    config.optim.reference_batch_size = 128
    config.optim.schedule = "cosine"
    config.optim.label_smoothing = 0.1
    config.optim.weight_decay = 5e-4

    config.num_epochs = 4.0
    config.log_every_steps = 200
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 500
    config.keep_checkpoints = 2

    stages = config.stages
    stages.baseline = {}
    stages.learned = {
        "init_from_stage": "baseline",
        "num_epochs": 3.0,
        "resizer": {"kind": "learned"},
        "optim": {"learning_rate": 0.02},
    }
    stages.bilinear_ft = {
        "init_from_stage": "baseline",
        "num_epochs": 3.0,
        "optim": {"learning_rate": 0.02},
    }
    # The paper's other fixed baseline; antialias stays the base config's (False), as
    # for bilinear_ft.
    stages.bicubic_ft = {
        "init_from_stage": "baseline",
        "num_epochs": 3.0,
        "resizer": {"kind": "bicubic"},
        "optim": {"learning_rate": 0.02},
    }
    return config
