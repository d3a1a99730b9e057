"""The optimizer and its learning-rate schedule, from `config.optim`.

SGD with momentum (the paper), the learning rate given per `reference_batch_size`
images and scaled linearly to the global batch, an optional linear warm-up, then
one of: constant, cosine to zero at the last step, or the paper's staircase decay
(x `decay_rate` every `decay_epochs`). Weight decay is L2 on kernels only (conv and
dense weights, ndim > 1): BN scales and biases and all biases are not decayed.
"""

import math

import jax
import ml_collections
import optax


def base_learning_rate(config: ml_collections.ConfigDict) -> float:
    """`optim.learning_rate` scaled from `reference_batch_size` to the global batch."""
    o = config.optim
    return o.learning_rate * config.batch_size / o.reference_batch_size


def total_steps(config: ml_collections.ConfigDict, num_train_examples: int) -> int:
    """Training steps: `num_train_steps` if > 0, else `num_epochs` over the train split."""
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return math.ceil(config.num_epochs * num_train_examples / config.batch_size)


def make_schedule(config: ml_collections.ConfigDict, steps_per_epoch: int, num_steps: int):
    """The learning rate as a function of the step (an optax schedule)."""
    o = config.optim
    base_lr = base_learning_rate(config)
    warmup = int(o.warmup_epochs * steps_per_epoch)
    if o.schedule == "constant":
        decay = optax.constant_schedule(base_lr)
    elif o.schedule == "cosine":
        decay = optax.cosine_decay_schedule(base_lr, max(1, num_steps - warmup))
    else:  # "exponential", the paper's: x0.94 every 2 epochs, as a staircase.
        decay = optax.exponential_decay(
            base_lr,
            transition_steps=max(1, int(o.decay_epochs * steps_per_epoch)),
            decay_rate=o.decay_rate,
            staircase=True,
        )
    if not warmup:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, base_lr, warmup), decay], [warmup])


def decay_mask(params):
    """True for the leaves weight decay applies to: kernels (ndim > 1)."""
    return jax.tree.map(lambda x: x.ndim > 1, params)


def make_optimizer(config: ml_collections.ConfigDict, steps_per_epoch: int, num_steps: int):
    """Returns (optax transformation, schedule) for `config.optim`."""
    o = config.optim
    schedule = make_schedule(config, steps_per_epoch, num_steps)
    parts = []
    if o.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(o.grad_clip_norm))
    if o.weight_decay > 0:
        parts.append(optax.add_decayed_weights(o.weight_decay, mask=decay_mask))
    parts.append(optax.sgd(schedule, momentum=o.momentum, nesterov=o.nesterov))
    return optax.chain(*parts), schedule
