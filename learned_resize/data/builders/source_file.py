"""`code_path` for this package's TFDS builders.

TFDS 4.9.10 finds a builder's source file through `importlib_resources`, a backport it
only installs for Python < 3.9, so the lookup fails here. Each builder names its file
directly: `code_path = source_file.code_path(__file__)` in the class body.
"""

import tensorflow_datasets as tfds
from etils import epath


def code_path(path: str):
    """The class property TFDS reads, returning `path` for the builder and its subclasses."""
    return tfds.core.utils.classproperty(classmethod(lambda cls: epath.Path(path)))
