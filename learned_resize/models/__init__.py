"""Classifier registry: every backbone is built by name from here.

Each classifier is a `flax.nnx.Module` whose `__call__(x, train)` maps a float
NHWC batch to float32 logits. Modules are imported lazily so that building the
small default network does not import every architecture.
"""

import importlib

import jax
import jax.numpy as jnp
from flax import nnx

# name -> (module path, constructor name, fixed keyword arguments)
_REGISTRY = {
    "small_cnn": ("learned_resize.models.small_cnn", "SmallCNN", {}),
    "resnet18": ("learned_resize.models.resnet", "ResNet", {"depth": 18}),
    "resnet34": ("learned_resize.models.resnet", "ResNet", {"depth": 34}),
    "resnet50": ("learned_resize.models.resnet", "ResNet", {"depth": 50}),
    "resnet101": ("learned_resize.models.resnet", "ResNet", {"depth": 101}),
    "densenet121": ("learned_resize.models.densenet", "DenseNet", {"depth": 121}),
    "mobilenet_v2": ("learned_resize.models.mobilenet_v2", "MobileNetV2", {"width": 1.0}),
    "inception_v2": ("learned_resize.models.inception_v2", "InceptionV2", {}),
    **{
        f"efficientnet_b{i}": ("learned_resize.models.efficientnet", "EfficientNet", {"variant": i})
        for i in range(8)
    },
}


def available_classifiers() -> list[str]:
    return sorted(_REGISTRY)


def get_classifier(name: str, num_classes: int, *, rngs: nnx.Rngs, dtype=jnp.float32, **kwargs):
    """Builds the classifier `name` with a `num_classes`-way head.

    Args:
      name: a registered name, see `available_classifiers()`.
      num_classes: size of the output layer.
      rngs: parameter initialisation keys.
      dtype: compute dtype (parameters and BN statistics stay float32).
      **kwargs: passed to the constructor (e.g. `in_channels`).

    Returns:
      The module; `module(x, train=...)` returns float32 logits.
    """
    if name not in _REGISTRY:
        raise ValueError(
            f"Unknown classifier {name!r}; set config.model.name to one of "
            f"{', '.join(available_classifiers())}."
        )
    module_path, ctor_name, fixed = _REGISTRY[name]
    ctor = getattr(importlib.import_module(module_path), ctor_name)
    return ctor(num_classes=num_classes, rngs=rngs, dtype=dtype, **fixed, **kwargs)


def count_params(module: nnx.Module) -> int:
    """Number of trainable parameters (nnx.Param leaves) of `module`."""
    state = nnx.state(module, nnx.Param)
    return sum(int(x.size) for x in jax.tree.leaves(state))
