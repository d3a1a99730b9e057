"""The repository's configs for tests: `configs/<name>.py`, and the tiny config on a
small Fashion-MNIST-format dataset (the `small_fmnist` fixture of tests/conftest.py)."""

import importlib


def load_config(name="tiny", arg=None):
    """configs/<name>.py's get_config(arg), imported as a module (conftest puts the repo on
    sys.path)."""
    module = importlib.import_module(f"configs.{name}")
    return module.get_config(arg) if arg is not None else module.get_config()


def tiny_config(small_fmnist, **overrides):
    source, data_dir, _ = small_fmnist
    config = load_config("tiny")
    config.data.manual_dir = source
    config.data.data_dir = data_dir
    for key, value in overrides.items():
        node = config
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return config
