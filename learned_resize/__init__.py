"""learned_resize: learned image resizers and deep-feature retargeting in JAX/Flax."""

__version__ = "0.1.0"
