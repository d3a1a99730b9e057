"""The compute dtype `config.model.dtype = "auto"` resolves to on the devices at hand.

bfloat16 where the hardware computes it natively: TPUs, and NVIDIA GPUs of compute
capability 8.0 or newer (A100, A10/A40/RTX 30xx (8.6), L4/L40 (8.9), H100 (9.0),
Blackwell); float32 on CPUs, on older GPUs (V100 7.0, T4 7.5: no bfloat16 tensor
cores), and on any device this module does not know. Parameters and BatchNorm
statistics stay float32 either way (the models keep `param_dtype=float32`).

TF32: float32 matmuls and convolutions keep jax's default precision, which on
Ampere and newer GPUs uses TF32 tensor cores (10-bit mantissa inputs, float32
accumulation), as TPUs use bfloat16 passes for float32 by default. For full float32
(e.g. to compare against a CPU run), set `JAX_DEFAULT_MATMUL_PRECISION=highest`.
"""

from collections.abc import Sequence

DTYPES = ("auto", "float32", "bfloat16")
# The first NVIDIA architecture with bfloat16 tensor cores (Ampere, sm_80).
_BF16_COMPUTE_CAPABILITY = (8, 0)


def _capability(device) -> tuple[int, ...] | None:
    """'8.6' -> (8, 6); None when the device does not report one (non-CUDA)."""
    value = getattr(device, "compute_capability", None)
    try:
        return tuple(int(part) for part in str(value).split("."))
    except ValueError:
        return None


def has_fast_bfloat16(device) -> bool:
    """True on TPUs and on CUDA GPUs of compute capability >= 8.0."""
    if device.platform == "tpu":
        return True
    if device.platform in ("gpu", "cuda"):
        capability = _capability(device)
        return capability is not None and capability >= _BF16_COMPUTE_CAPABILITY
    return False


def compute_dtype(requested: str, devices: Sequence | None = None) -> str:
    """`requested`, or for "auto" bfloat16 if every device has fast bfloat16, else float32.

    Args:
      requested: config.model.dtype, one of DTYPES.
      devices: the devices the model runs on; default `jax.devices()` (call after
        `jax.distributed` is initialised).

    Returns:
      "float32" or "bfloat16".
    """
    if requested not in DTYPES:
        raise ValueError(f"config.model.dtype must be one of {DTYPES}, got {requested!r}.")
    if requested != "auto":
        return requested
    if devices is None:
        import jax

        devices = jax.devices()
    return "bfloat16" if devices and all(map(has_fast_bfloat16, devices)) else "float32"
