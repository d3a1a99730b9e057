r"""Tiny: the default pipeline at test size (a few steps); `:staged` adds two stages.

    python -m learned_resize.main --config=configs/tiny.py --workdir=/tmp/tiny \
        --config.data.data_dir=DIR
    python -m learned_resize.main --config=configs/tiny.py:staged --workdir=/tmp/tiny2

Used by the tests with a small Fashion-MNIST-format dataset they write; takes
seconds on a 2-core CPU. Produces a results.json with top-1/top-5 near chance.
`staged` is configs/default.py's baseline -> learned chain at this size.
"""

from learned_resize.config import defaults


def get_config(variant: str = ""):
    config = defaults.base_config()
    config.data.name = "fashion_mnist_local"
    config.data.channels = 1
    config.data.num_classes = 10
    config.data.crop = "none"
    config.data.eval_crop_fraction = 1.0
    config.data.mean = (0.286,)
    config.data.std = (0.353,)
    config.input_size = (28, 28)
    config.resizer.kind = "learned"
    config.resizer.output_size = (8, 8)
    config.resizer.num_filters = 4
    config.model.name = "small_cnn"
    config.batch_size = 16
    config.optim.learning_rate = 0.05
    config.optim.reference_batch_size = 16
    config.optim.schedule = "constant"
    config.num_train_steps = 6
    config.log_every_steps = 2
    config.eval_every_steps = 0
    config.checkpoint_every_steps = 2
    config.keep_checkpoints = 5
    config.num_eval_images = 4
    if variant == "staged":
        config.resizer.kind = "bilinear"
        config.stages.baseline = {}
        config.stages.learned = {
            "init_from_stage": "baseline",
            "resizer": {"kind": "learned"},
            "optim": {"learning_rate": 0.02},
        }
    elif variant:
        raise ValueError(f"configs/tiny.py has variants '' and 'staged', not {variant!r}.")
    return config
