"""NIMA's score head for image quality (IQA): pooled features -> a distribution over
the score bins. The loss and metrics that read it are in `learned_resize/iqa.py`."""

import jax
import jax.numpy as jnp
from flax import nnx

NUM_BINS = 10  # AVA's score bins 1..10


class ScoreHead(nnx.Module):
    """NIMA's head: dropout, a dense layer to the K score bins, and a softmax.

    Applied to a backbone's pooled feature vector. Dropout draws from the rng
    stream 'dropout' of the `rngs` given at construction; it is active only when
    `train` is True.
    """

    def __init__(
        self,
        in_features: int,
        num_bins: int = NUM_BINS,
        dropout_rate: float = 0.75,
        dtype=jnp.float32,
        *,
        rngs: nnx.Rngs,
    ):
        """Builds the head.

        Args:
          in_features: width D of the pooled features.
          num_bins: number of score bins (10 for AVA).
          dropout_rate: probability of dropping a feature during training (NIMA: 0.75).
          dtype: compute dtype of the dense layer; parameters stay float32.
          rngs: must provide 'params' and 'dropout' streams.
        """
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(
                f"ScoreHead dropout_rate must be in [0, 1), got {dropout_rate}; "
                "set e.g. config.model.head_dropout=0.75."
            )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.dense = nnx.Linear(
            in_features, num_bins, dtype=dtype, param_dtype=jnp.float32, rngs=rngs
        )

    def __call__(
        self, features: jax.Array, train: bool, *, rngs: nnx.Rngs | jax.Array | None = None
    ) -> jax.Array:
        """Maps pooled features [N, D] to score distributions, float32 [N, K].

        Args:
          features: pooled backbone features [N, D].
          train: apply dropout.
          rngs: optional dropout key for this call (e.g. fold_in(seed_key, step) in a
            pure jitted step); by default the head's own 'dropout' stream is advanced.

        Returns:
          float32 [N, K] probabilities.
        """
        if features.ndim != 2:
            raise ValueError(
                f"ScoreHead expects pooled features [N, D], got shape {features.shape}; "
                "pool the backbone's feature map over height and width first."
            )
        x = self.dropout(features, deterministic=not train, rngs=rngs)
        logits = self.dense(x).astype(jnp.float32)
        # Softmax in float32 so bf16 compute still gives distributions summing to 1.
        return jax.nn.softmax(logits, axis=-1)
