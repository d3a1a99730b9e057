"""CPU-only formulations of a few layers, and the one switch that turns them off.

XLA:CPU runs some layers far below its dense rate, so on the CPU backend the models
compute the same functions another way (same parameters and checkpoints, the same
values up to float rounding):

  narrow_conv.py  the learned resizer's 16 -> 3 channel 7x7 output convolution as
                  matmuls (under tcmalloc only: it allocates a large temporary);
  conv_forms.py   1x1 convolutions as matmuls, depthwise convolutions as sums of taps;
  winograd.py     VGG's 3x3 layers of >= 256 channels by Winograd F(2x2, 3x3) inside
                  the retargeting loss.

GPUs and TPUs always get XLA's own convolutions. Setting the environment variable
`LEARNED_RESIZE_CPU_FORMS=off` before start-up gives the CPU backend that accelerator
formulation too: the way to see an accelerator's program (its memory, FLOPs) on this
machine. `auto`, the default, uses the CPU forms on CPU.
"""

import os

ENV = "LEARNED_RESIZE_CPU_FORMS"
_VALUES = ("auto", "off")


def enabled() -> bool:
    """Whether programs traced on the CPU backend may use the CPU-only formulations."""
    value = os.environ.get(ENV, "auto").strip().lower() or "auto"
    if value not in _VALUES:
        raise ValueError(f"{ENV}={value!r}; use one of {', '.join(_VALUES)}.")
    return value == "auto"
