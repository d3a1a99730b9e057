r"""Prepares one of the project's own TFDS datasets ahead of training.

Training prepares them on first use anyway; run this once before a multi-host
job so that the hosts do not all build the same files at the same time:

    python -m learned_resize.data.prepare --dataset=fashion_mnist_local \
        [--data_dir=~/tensorflow_datasets] [--manual_dir=/usr/share/datasets/fashion-mnist]

Full Fashion-MNIST (70,000 PNG-encoded images) takes about a minute on 2 CPU cores.
Catalog datasets such as imagenet2012 are prepared with `tfds build` instead.

A mistake (a bad flag, a missing source dir) is one line `error: ...` on stderr, exit
status 1, as for `learned_resize.main`.
"""

import os

from absl import app, flags

from learned_resize.data import builders as builders_lib
from learned_resize.runtime import cli, errors

_DATASET = flags.DEFINE_enum(
    "dataset", "fashion_mnist_local", sorted(builders_lib.LOCAL_BUILDERS), "Dataset to prepare."
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "TFDS data dir; default $TFDS_DATA_DIR, else ~/tensorflow_datasets."
)
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "Directory with the source files; default: the Debian package's."
)


def _prepare(argv) -> None:
    if len(argv) > 1:
        raise errors.UserError(f"unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    manual_dir = _MANUAL_DIR.value
    if manual_dir and not os.path.isdir(os.path.expanduser(manual_dir)):
        raise errors.UserError(
            f"--manual_dir={manual_dir} is not a directory; point it at {_DATASET.value}'s "
            "source files, or leave it out for the default location."
        )
    data_dir = builders_lib.resolve_data_dir(_DATA_DIR.value)
    try:
        seconds = builders_lib.prepare(_DATASET.value, data_dir, manual_dir)
    except FileNotFoundError as e:  # The builders' hints name the trainer's config key.
        raise errors.UserError(
            errors.brief(e).replace("config.data.manual_dir", "--manual_dir")
        ) from None
    if seconds:
        print(f"Prepared {_DATASET.value} in {data_dir} in {seconds:.1f} s.")
    else:
        print(f"{_DATASET.value} is already prepared in {data_dir}.")


def main(argv):
    cli.setup_logging()  # progress on stdout: stderr is for warnings and `error: ...`
    try:
        _prepare(argv)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        errors.exit_with(e, errors.EXIT_USER_ERROR)  # UserError is a ValueError


def parse_flags(argv) -> list[str]:
    """absl's flag parse; a bad flag is one `error:` line (exit status 1), no usage text."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = f"{errors.brief(e)}; see --helpfull for the flags and their values."
        errors.exit_with(errors.UserError(message), errors.EXIT_USER_ERROR)
        raise  # not reached


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    console()
