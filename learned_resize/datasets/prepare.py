r"""Prepares one of the project's own TFDS datasets ahead of training.

Training prepares them on first use anyway; run this once before a multi-host
job so that the hosts do not all build the same files at the same time:

    python -m learned_resize.datasets.prepare --dataset=fashion_mnist_local \
        [--data_dir=~/tensorflow_datasets] [--manual_dir=/usr/share/datasets/fashion-mnist]

Full Fashion-MNIST (70,000 PNG-encoded images) takes about a minute on 2 CPU cores.
Catalog datasets such as imagenet2012 are prepared with `tfds build` instead.
"""

from absl import app, flags

from learned_resize import datasets

_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist_local", sorted(datasets.LOCAL_BUILDERS), "Dataset to prepare."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir; default $TFDS_DATA_DIR, else ~/tensorflow_datasets."
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Directory with the source files; default: the Debian package's."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    data_dir = datasets.resolve_data_dir(_DATA_DIR.value)
    seconds = datasets.prepare(_DATASET.value, data_dir, _MANUAL_DIR.value)
    if seconds:
        print(f"Prepared {_DATASET.value} in {data_dir} in {seconds:.1f} s.")
    else:
        print(f"{_DATASET.value} is already prepared in {data_dir}.")


if __name__ == "__main__":
    app.run(main)
