"""Tables of the cost counts (`flops.py`): per-backbone costs, the paper's DenseNet-121
figures beside ours, and ImageNet training-time estimates (method: `flops.py`'s doc)."""

import dataclasses

# The paper's reported DenseNet-121 forward cost (GFLOPs) at 224, and with the learned
# resizer 448 -> 224.
PAPER_DENSENET121_GFLOPS = (5.67, 7.65)


@dataclasses.dataclass(frozen=True)
class Accelerator:
    name: str
    chips: int
    peak_tflops: float  # dense bf16 per chip


ACCELERATORS = (
    Accelerator("TPU v4-8", 4, 275.0),
    Accelerator("8x A100", 8, 312.0),
)
MFU_RANGE = (0.4, 0.5)
TRAIN_FLOPS_PER_FORWARD = 3.0  # backward ~ 2x forward
NUM_TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train and validation set sizes
NUM_EVAL_IMAGES = 50_000


def train_hours(forward_gflops: float, epochs: float, accelerator: Accelerator, mfu: float):
    """Hours to train `epochs` ImageNet epochs at `mfu` of the accelerator's bf16 peak."""
    flops = TRAIN_FLOPS_PER_FORWARD * forward_gflops * 1e9 * epochs * NUM_TRAIN_IMAGES
    return flops / (accelerator.chips * accelerator.peak_tflops * 1e12 * mfu) / 3600


def _duration_range(forward_gflops, epochs, accelerator, mfu_range) -> str:
    fast, slow = (train_hours(forward_gflops, epochs, accelerator, m) for m in mfu_range[::-1])
    if slow < 1:
        return f"{fast * 60:.0f}-{slow * 60:.0f} min"
    return f"{fast:.1f}-{slow:.1f} h"


# --------------------------------------------------------------------------- tables


def cost_table(costs: dict, resizer, input_size: int, output_size: int) -> str:
    """Markdown table of `{backbone: backbone_costs(...)}`, then the learned resizer alone
    (`resizer`: a `flops.Cost`).

    Columns: parameters; XLA GFLOPs and layer GMACs behind the fixed bilinear resize;
    the same behind the learned resizer; the overhead in XLA FLOPs and in the paper's
    convention (2 x layer GMACs). A `resize GMACs` column is added when the fixed
    resizes are computed as matrix products (jax.image.resize).
    """
    b, s = f"bilinear {output_size}", f"learned {input_size}->{output_size}"
    show_resize = resizer.resize_macs > 0 or any(
        c[k].resize_macs > 0 for c in costs.values() for k in c
    )
    head = [
        "backbone", "params", f"{b} GFLOPs", f"{b} GMACs", f"{s} params", f"{s} GFLOPs",
        f"{s} GMACs", *(["resize GMACs"] if show_resize else []), "overhead GFLOPs (XLA)",
        "overhead 2xGMACs",
    ]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    g = lambda x: f"{x / 1e9:.2f}"
    for name, c in costs.items():
        base, learned = c["bilinear"], c["learned"]
        extra = learned.flops - base.flops
        extra_macs = 2 * (learned.macs - base.macs)
        cells = [
            name, f"{base.params:,}", g(base.flops), g(base.macs), f"{learned.params:,}",
            g(learned.flops), g(learned.macs), *([g(learned.resize_macs)] if show_resize else []),
            f"+{g(extra)} (+{100 * extra / base.flops:.0f}%)",
            f"+{g(extra_macs)} (+{100 * extra_macs / (2 * base.macs):.0f}%)",
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    cells = [
        "learned resizer alone (f32 in)", "", "", "", f"{resizer.params:,}", g(resizer.flops),
        g(resizer.macs), *([g(resizer.resize_macs)] if show_resize else []), "", "",
    ]  # fmt: skip
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def estimate_table(
    costs: dict, baseline_epochs: float, learned_epochs: float, mfu_range=MFU_RANGE
) -> str:
    """Markdown table of estimated training time per backbone, stage and accelerator."""
    heads = [f"{a.name} {stage}" for a in ACCELERATORS for stage in ("baseline", "learned")]
    lines = ["| backbone | " + " | ".join(heads) + " |", "|---" + "|---:" * len(heads) + "|"]
    for name, c in costs.items():
        cells = []
        for a in ACCELERATORS:
            for kind, epochs in (("bilinear", baseline_epochs), ("learned", learned_epochs)):
                cells.append(_duration_range(c[kind].flops / 1e9, epochs, a, mfu_range))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paper_comparison(costs: dict) -> str | None:
    """One paragraph setting the DenseNet-121 counts beside the paper's, if measured."""
    if "densenet121" not in costs:
        return None
    c = costs["densenet121"]
    xla = (c["bilinear"].flops / 1e9, c["learned"].flops / 1e9)
    twice = (2 * c["bilinear"].macs / 1e9, 2 * c["learned"].macs / 1e9)
    paper = PAPER_DENSENET121_GFLOPS
    return (
        f"DenseNet-121 vs the paper: paper {paper[0]:.2f} -> {paper[1]:.2f} GFLOPs; "
        f"2 x layer GMACs here {twice[0]:.2f} -> {twice[1]:.2f}; XLA {xla[0]:.2f} -> "
        f"{xla[1]:.2f}. The paper's 'FLOPs' are 2 x multiply-adds of the conv/dense layers "
        "(XLA's convention too); XLA also counts elementwise work (BN, activations), leaves "
        "padded conv taps out, and counts the fixed resizes' arithmetic (listed in a "
        "'resize GMACs' column when a fixed resize is not the identity)."
    )
