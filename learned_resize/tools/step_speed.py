"""The trainer's train step at the largest batch that fits, timed (`device_check`'s
resnet50 row): images/s, XLA's FLOPs of the step and MFU against the chip's peak.

The batch is a fixed random uint8 one of the config's input size; the batch size starts
at the one asked for and is halved (kept a multiple of the device count) while
compiling or running the step runs out of device memory.
"""

import time

import numpy as np

from learned_resize.tools import chips


def random_batch(config, seed: int = 0) -> dict:
    """A fixed random uint8 batch of the config's input size (as bench/train_step.py)."""
    rng = np.random.default_rng(seed)
    size, n = tuple(config.input_size), config.batch_size
    return {
        "image": rng.integers(0, 256, (n, *size, config.data.channels), np.uint8),
        "label": rng.integers(0, config.data.num_classes, n, np.int32),
        "skipped": np.zeros(n, np.int32),
    }


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error).lower()
    return any(s in text for s in ("resource_exhausted", "resource exhausted", "out of memory"))


def largest_batch(try_batch, start: int, multiple: int = 1):
    """`(batch, try_batch(batch))` for the first of start, start/2, ... (kept a multiple of
    `multiple`) whose `try_batch` does not run out of device memory; other errors propagate.

    Raises:
      MemoryError: even `multiple` (one image per device) does not fit.
    """
    batch = max(multiple, start // multiple * multiple)
    while True:
        try:
            return batch, try_batch(batch)
        except Exception as e:
            if not is_out_of_memory(e) or batch <= multiple:
                if is_out_of_memory(e):
                    raise MemoryError(f"batch {batch} does not fit: {str(e)[:200]}") from e
                raise
            batch = max(multiple, batch // 2 // multiple * multiple)


class CompiledStep:
    """The trainer's train step for one config, compiled, with its state and batch."""

    def __init__(self, config, mesh):
        import jax

        from learned_resize import steps as steps_lib
        from learned_resize.runtime import compiled_stats
        from learned_resize.runtime import mesh as mesh_lib

        trainer = steps_lib.Steps(config, mesh, steps_per_epoch=1000, num_steps=10_000)
        self.state, self.rest = trainer.init(jax.random.key(0))
        self.batch = mesh_lib.global_batch(random_batch(config), mesh)
        self.step = trainer.train_step.lower(self.state, self.batch, self.rest).compile()
        self.flops = compiled_stats.xla_flops(self.step)
        self.run(1)  # runs out of memory here rather than in the timing

    def run(self, steps: int) -> float:
        """Seconds for `steps` steps, blocking on the last."""
        import jax

        start = time.perf_counter()
        for _ in range(steps):
            self.state, metrics = self.step(self.state, self.batch, self.rest)
        jax.block_until_ready(metrics["loss"])
        return time.perf_counter() - start


def measure(make_config, start_batch: int, steps: int) -> tuple[dict, str]:
    """(values, one-line summary) of the step of `make_config(batch)` at the largest batch
    that fits, from start_batch; `steps` timed steps after two of warm-up."""
    import gc

    import jax

    from learned_resize.runtime import mesh as mesh_lib

    mesh = mesh_lib.create_mesh()
    devices = jax.device_count()

    def attempt(batch):
        gc.collect()  # the failed attempt's buffers
        return CompiledStep(make_config(batch), mesh)

    batch, step = largest_batch(attempt, start_batch, devices)
    config = make_config(batch)
    step.run(2)  # warm-up
    seconds = step.run(steps) / steps
    kind = jax.devices()[0].device_kind
    achieved = step.flops / seconds  # per device: XLA's count is of one device's program
    peak = chips.peak_bf16(kind)
    size_in, size_out = config.input_size[0], config.resizer.output_size[0]
    values = {
        "batch": batch,
        "devices": devices,
        "input_px": size_in,
        "output_px": size_out,
        "step_seconds": seconds,
        "images_per_s": batch / seconds,
        "step_flops_per_device": step.flops,
        "achieved_flops_per_device": achieved,
        "peak_bf16_flops_per_device": peak,
        "mfu": achieved / peak if peak else None,
    }
    summary = (
        f"{size_in}->{size_out} px, batch {batch} on {devices} device(s): "
        f"{batch / seconds:.1f} images/s, {seconds * 1e3:.1f} ms/step, "
        f"{step.flops / 1e9:.4g} GFLOP/step/device, {achieved / 1e12:.3g} TFLOP/s/device"
    )
    if peak:
        summary += f" = {achieved / peak:.1%} MFU of {peak / 1e12:.0f} TFLOP/s ({kind})"
    else:
        summary += f" (no peak figure for {kind!r}: MFU not computed)"
    return values, summary
