"""A tiny stand-in for VGG with its interface, for retargeting tests without weights."""

import functools

import jax
from flax import nnx


class TinyNet(nnx.Module):
    """Stand-in for VGG with its interface: linear conv, avg pool, conv + ReLU."""

    def __init__(self, *, rngs):
        self.conv1_1 = nnx.Conv(3, 6, (3, 3), padding=1, rngs=rngs)
        self.conv2_1 = nnx.Conv(6, 8, (3, 3), padding=1, rngs=rngs)

    def __call__(self, x, layers):
        feats = {"conv1_1": self.conv1_1(x)}
        feats["pool1"] = nnx.avg_pool(feats["conv1_1"], (2, 2), (2, 2))
        feats["conv2_1"] = jax.nn.relu(self.conv2_1(feats["pool1"]))
        return {name: feats[name] for name in layers}


@functools.cache
def nets():
    """(reconstruction, perceptual) stand-ins, made once per process."""
    return TinyNet(rngs=nnx.Rngs(0)), TinyNet(rngs=nnx.Rngs(1))


def small_config(api):
    """A retargeting config the stand-ins can run: two layers, few iterations."""
    cfg = api.get_config()
    cfg.mask.layers = ("conv2_1",)
    cfg.rec_layers = ("conv1_1", "conv2_1")
    cfg.rec_weights = (1.0, 1.0)
    cfg.perc_layers = ("pool1",)
    cfg.plan_stride = 2
    cfg.scales = (0.5, 1.0)
    cfg.iterations = (5, 3)
    return cfg
