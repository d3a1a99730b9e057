"""Peak dense bf16 FLOP/s per accelerator chip, for MFU (`device_check`)."""

# Peak dense (no sparsity) bf16 FLOP/s per chip, from the vendors' datasheets: NVIDIA's
# H100 / H200 / A100 product datasheets (their tables give the 2:4-sparse figure, twice
# these) and Google Cloud's TPU system-architecture pages (per chip; v4 and v5p run one
# JAX device per chip, "megacore"). GPUs match by substring of `device_kind`, first hit
# wins (PCIe and NVL H100s have lower clocks than the SXM part); TPUs by the exact kind.
PEAK_BF16_GPU = (
    ("h100 pcie", 756e12),
    ("h100 nvl", 835e12),
    ("h100", 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("h200", 989e12),  # also GH200
    ("a100", 312e12),  # SXM4 and PCIe alike
)
PEAK_BF16_TPU = {
    "tpu v4": 275e12,
    "tpu v5 lite": 197e12,  # v5e
    "tpu v5e": 197e12,
    "tpu v5": 459e12,  # v5p
    "tpu v5p": 459e12,
    "tpu v6 lite": 918e12,  # v6e (Trillium)
    "tpu v6e": 918e12,
}


def peak_bf16(device_kind: str) -> float | None:
    """Peak dense bf16 FLOP/s of one chip of this `device_kind`, or None if unknown."""
    kind = " ".join(device_kind.lower().split())
    if kind in PEAK_BF16_TPU:
        return PEAK_BF16_TPU[kind]
    for pattern, peak in PEAK_BF16_GPU:
        if pattern in kind:
            return peak
    return None
