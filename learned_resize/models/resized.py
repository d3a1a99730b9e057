"""A resizer in front of a classifier: the model the trainer optimises.

The input pipeline ships uint8 images at the resizer's input size; this module
scales them to [0, 1], normalises per channel, resizes (fixed or learned) to the
classifier's input size and classifies. Keeping the normalisation on device means
the host sends 1 byte per pixel.
"""

import jax.numpy as jnp
import ml_collections
from flax import nnx

from learned_resize import models
from learned_resize.models import resizers
from learned_resize.models import score_head as score_head_lib
from learned_resize.runtime import precision


class ResizedClassifier(nnx.Module):
    """`classifier(resizer(normalise(images)))` with the two parts as attributes.

    The attribute names `resizer` and `classifier` are the top-level keys of the
    parameter tree, which `config.init_from.parts` selects from.
    """

    def __init__(self, resizer: nnx.Module, classifier: nnx.Module, mean, std, score_head=None):
        self.resizer = resizer
        self.classifier = classifier
        # IQA: the classifier is a headless backbone and this maps its pooled
        # features to a 10-bin score distribution.
        self.score_head = score_head
        self.mean = nnx.Variable(jnp.asarray(mean, jnp.float32))
        self.std = nnx.Variable(jnp.asarray(std, jnp.float32))

    def normalise(self, images):
        x = images.astype(jnp.float32) / 255.0
        return (x - self.mean[...]) / self.std[...]

    def denormalise(self, x):
        """Inverse of `normalise`, back to [0, 1] floats (for image grids)."""
        return x.astype(jnp.float32) * self.std[...] + self.mean[...]

    def resize(self, images, train: bool = False):
        """The resizer's output for uint8 `images`, in normalised units."""
        return self.resizer(self.normalise(images), train=train)

    def __call__(self, images, train: bool):
        """Logits [N, classes], or for IQA score probabilities [N, 10]."""
        out = self.classifier(self.resize(images, train=train), train=train)
        if self.score_head is not None:
            out = self.score_head(out, train=train)
        return out


def build_model(config: ml_collections.ConfigDict, *, rngs: nnx.Rngs) -> ResizedClassifier:
    """Builds the resizer + classifier described by `config` (already validated)."""
    dtype = jnp.dtype(precision.compute_dtype(config.model.dtype))
    channels = config.data.channels
    resizer = resizers.make_resizer(config.resizer, in_channels=channels, rngs=rngs, dtype=dtype)
    iqa_task = config.task == "iqa"
    classifier = models.get_classifier(
        config.model.name,
        0 if iqa_task else config.data.num_classes,  # 0: headless, returns pooled features
        rngs=rngs,
        dtype=dtype,
        in_channels=channels,
    )
    score_head = None
    if iqa_task:
        score_head = score_head_lib.ScoreHead(
            classifier.num_features,
            num_bins=config.data.num_classes,
            dropout_rate=config.model.head_dropout,
            dtype=dtype,
            rngs=rngs,
        )
    return ResizedClassifier(resizer, classifier, config.data.mean, config.data.std, score_head)
