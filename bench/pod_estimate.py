r"""ResNet-50 + learned resizer on a TPU v4-32 slice: images/s and time to accuracy, estimated.

    python bench/pod_estimate.py            # ~5-10 min on a 2-core CPU (four compilations)

Measured here (XLA's cost analysis of compiled programs, on CPU; a multiply-add counts 2):
  * forward FLOPs per image of ResNet-50 at 224 and of the learned resizer 448 -> 224,
    bf16 compute, eval mode;
  * the trainer's whole train step (forward, backward, SGD update) per image for the
    recipe's two stages, `baseline` (bilinear 224 -> 224, i.e. ResNet-50 alone) and
    `learned` (resizer 448 -> 224 + ResNet-50), from the step compiled at two batch
    sizes: (flops(B2) - flops(B1)) / (B2 - B1) is the per-image cost, the rest is the
    per-step optimizer update.
  * the host side: CPU time per image of the input pipeline's decode + Inception crop +
    resize (PIL, as in grain's workers) for a 500x375 JPEG (ImageNet's typical size).
Assumed (published / stated): TPU v4 peak 275 TFLOP/s bf16 per chip, a v4-32 slice is 16
chips on 4 hosts, and the MFU (model FLOPs utilisation) given by --mfu for the whole
step; a second figure runs the resizer's part at --resizer_mfu, because its 16-channel
convolutions fill 16 of the 128 columns of a TPU matrix unit. Images/s is the lower of
the chips' rate and the hosts' (hosts x config.data.num_workers decoding processes).
Time to accuracy is the recipe's epochs (configs/imagenet_resnet50.py) x 1,281,167
ImageNet training images, plus one 50,000-image eval pass per `eval_every_steps`.
"""

import io
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import PIL.Image
from absl import app, flags
from flax import nnx

from learned_resize import models
from learned_resize import steps as steps_lib
from learned_resize.config import stages as stages_lib
from learned_resize.data import pipeline as pipeline_lib
from learned_resize.data import sources
from learned_resize.models import resizers
from learned_resize.runtime import cli, mesh
from learned_resize.tools import cost_tables
from learned_resize.tools.flops import IMAGENET_CONFIG, xla_flops

V4_PEAK_TFLOPS = 275.0  # bf16 per chip (Google's published TPU v4 figure)
NUM_TRAIN_IMAGES = cost_tables.NUM_TRAIN_IMAGES
NUM_EVAL_IMAGES = cost_tables.NUM_EVAL_IMAGES
HOSTS = 4  # of a v4-32 slice
HOST_CPUS = 240  # vCPUs of a TPU v4 host VM

_MFU = flags.DEFINE_float("mfu", 0.4, "Assumed model FLOPs utilisation, in (0, 1].")
_RESIZER_MFU = flags.DEFINE_float(
    "resizer_mfu", 0.05, "MFU of the resizer's 16-channel convs, in (0, 1]."
)
_CHIPS = flags.DEFINE_integer("chips", 16, "Chips in the slice (v4-32: 16).", lower_bound=1)
for _name in ("mfu", "resizer_mfu"):
    flags.register_validator(
        _name, lambda v: 0 < v <= 1, f"--{_name} is a fraction of the peak: 0 < {_name} <= 1"
    )


def forward_flops(build, shape, batch=4) -> float:
    """Forward FLOPs per image of the module `build()` in eval mode, without allocating it."""
    graphdef, state = nnx.split(nnx.eval_shape(build))

    def forward(state, x):
        return nnx.merge(graphdef, state)(x, train=False)

    x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
    return xla_flops(forward, state, x) / batch


def train_step_flops(config, batches=(2, 4)) -> tuple[float, float]:
    """(per image, per step) FLOPs of the trainer's compiled train step for `config`."""
    trainer = steps_lib.Steps(config, mesh.create_mesh(), steps_per_epoch=1000, num_steps=1000)
    _, rest = jax.eval_shape(trainer._init_state, jax.random.key(0))
    h, w = config.input_size
    costs = []
    for b in batches:
        batch = {
            "image": jax.ShapeDtypeStruct((b, h, w, 3), jnp.uint8),
            "label": jax.ShapeDtypeStruct((b,), jnp.int32),
            "skipped": jax.ShapeDtypeStruct((b,), jnp.int32),
        }
        costs.append(xla_flops(trainer._train_step, trainer.abstract_state, batch, rest))
    per_image = (costs[1] - costs[0]) / (batches[1] - batches[0])
    return per_image, costs[0] - batches[0] * per_image


def input_seconds_per_image(size: int, n: int = 100) -> float:
    """CPU seconds per image of decode + Inception crop + resize to `size` (a 500x375 JPEG)."""
    rng = np.random.default_rng(0)
    # Smooth content plus noise: a JPEG of typical ImageNet size and bytes (~75 kB).
    smooth = PIL.Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    pixels = np.asarray(smooth.resize((500, 375), PIL.Image.Resampling.BICUBIC), np.int16)
    pixels = np.clip(pixels + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    start = time.process_time()  # CPU time: this machine is shared.
    for i in range(n):
        pipeline_lib.train_preprocess(
            pipeline_lib.decode_image(data, 3),
            np.random.default_rng(i),
            image_size=(size, size),
            crop="inception",
            min_area=0.08,
            flip=True,
            eval_crop_fraction=0.875,
        )
    return (time.process_time() - start) / n


def recipe_stages():
    config = cli.load_config(f"{IMAGENET_CONFIG}:resnet50")
    return {name: c for name, _, c in stages_lib.stage_configs(config, "/unused")}


def stage_rows(stages, peak, r50, resizer) -> list[dict]:
    """Per stage: its FLOPs, the chips' and the hosts' images per second, and hours."""
    rows = []
    base_per_image = None
    for name, config in stages.items():
        per_image, per_step = train_step_flops(config)
        batch = config.batch_size
        useful = _MFU.value * peak
        chips_rate = useful / (per_image + per_step / batch)
        slow_rate = chips_rate
        if config.resizer.kind == "learned" and base_per_image is not None:
            # The classifier's share at --mfu, the resizer's (the difference) at --resizer_mfu.
            resizer_part = per_image - base_per_image
            seconds = (per_image - resizer_part + per_step / batch) / useful
            slow_rate = 1 / (seconds + resizer_part / (_RESIZER_MFU.value * peak))
        if config.resizer.kind != "learned":
            base_per_image = per_image
        host_s = input_seconds_per_image(config.input_size[0])
        workers = sources.resolve_num_workers(
            config.data.num_workers, cpu_count=HOST_CPUS, backend="tpu"
        )
        input_rate = HOSTS * workers / host_s
        rates = (min(chips_rate, input_rate), min(slow_rate, input_rate))
        steps = math.ceil(config.num_epochs * NUM_TRAIN_IMAGES / batch)
        forward = r50 + (resizer if config.resizer.kind == "learned" else 0.0)
        evals = steps // config.eval_every_steps + 1
        eval_s = evals * NUM_EVAL_IMAGES * forward / useful  # forward only
        hours = [(steps * batch / r + eval_s) / 3600 for r in rates]
        cores = chips_rate / HOSTS * host_s
        rows.append(
            dict(
                name=name,
                config=config,
                per_image=per_image,
                per_step=per_step,
                forward=forward,
                chips_rate=chips_rate,
                slow_rate=slow_rate,
                host_s=host_s,
                input_rate=input_rate,
                cores=cores,
                hours=hours,
            )
        )
    return rows


def print_rows(rows, peak) -> None:
    """The estimate table of `stage_rows` and the total of both stages."""
    print(
        f"\nTrain step per image (forward + backward + update; XLA) and the v4-{2 * _CHIPS.value}"
        f" estimate: {_CHIPS.value} chips x {V4_PEAK_TFLOPS:g} TFLOP/s x MFU {_MFU.value:.0%} = "
        f"{_MFU.value * peak / 1e15:.2f} PFLOP/s of model FLOPs; hosts: {HOSTS} x "
        "config.data.num_workers decoding processes:\n"
    )
    print(
        "| stage | input | train GFLOPs/img | / fwd | update GFLOPs/step | chips img/s "
        f"(resizer at {_RESIZER_MFU.value:.0%}) | host ms/img | hosts img/s (workers) | "
        "cores/host needed | epochs | hours |"
    )
    print("|---|---|" + "---:|" * 9)
    totals = [0.0, 0.0]
    for row in rows:
        name, config, per_image, per_step, forward, hours = (
            row[k] for k in ("name", "config", "per_image", "per_step", "forward", "hours")
        )
        chips_rate, slow_rate, host_s, input_rate, cores = (
            row[k] for k in ("chips_rate", "slow_rate", "host_s", "input_rate", "cores")
        )
        totals = [t + h for t, h in zip(totals, hours)]
        slow = f" ({slow_rate:,.0f})" if slow_rate != chips_rate else ""
        workers = sources.resolve_num_workers(config.data.num_workers, HOST_CPUS, "tpu")
        print(
            f"| {name} | {config.input_size[0]} -> {config.resizer.output_size[0]} | "
            f"{per_image / 1e9:.2f} | {per_image / forward:.2f} | {per_step / 1e9:.2f} | "
            f"{chips_rate:,.0f}{slow} | {host_s * 1e3:.1f} | {input_rate:,.0f} "
            f"({workers}) | {cores:.0f} | {config.num_epochs:g} | "
            f"{hours[0]:.1f}-{hours[1]:.1f} |"
        )
    print(
        f"\nBoth stages (the paper's accuracy): {totals[0]:.1f}-{totals[1]:.1f} h at MFU "
        f"{_MFU.value:.0%} (resizer {_RESIZER_MFU.value:.0%}), images/s = min(chips, hosts)."
    )


def main(argv):
    if len(argv) > 1:
        sys.exit(f"error: unexpected arguments {' '.join(argv[1:])}; flags start with --.")
    if jax.device_count() != 1:
        sys.exit(
            f"error: jax sees {jax.device_count()} devices; the cost analysis must see one: run "
            "without simulated devices (drop --xla_force_host_platform_device_count from "
            "XLA_FLAGS)."
        )

    bf16 = jnp.bfloat16
    r50 = forward_flops(
        lambda: models.get_classifier("resnet50", 1000, rngs=nnx.Rngs(0), dtype=bf16),
        (224, 224, 3),
    )
    resizer = forward_flops(
        lambda: resizers.LearnedResizer(
            (224, 224), 16, 1, antialias=False, dtype=bf16, rngs=nnx.Rngs(0)
        ),
        (448, 448, 3),
    )
    stages = recipe_stages()
    peak = _CHIPS.value * V4_PEAK_TFLOPS * 1e12
    print("Forward FLOPs per image (XLA cost analysis, bf16 compute, eval mode):\n")
    print("| model | GFLOPs |\n|---|---:|")
    print(f"| ResNet-50 at 224 | {r50 / 1e9:.2f} |")
    print(f"| learned resizer 448 -> 224 (n=16, r=1) | {resizer / 1e9:.2f} |")
    print(f"| resizer + ResNet-50 | {(r50 + resizer) / 1e9:.2f} |")

    rows = stage_rows(stages, peak, r50, resizer)
    print_rows(rows, peak)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
