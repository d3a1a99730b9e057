r"""Parameters and forward FLOPs per image of every backbone, with and without the resizer.

    python -m learned_resize.tools.flops
    python -m learned_resize.tools.flops --backbones=densenet121 --input_size=368 --output_size=224

For each backbone, the model the trainer builds (uint8 images -> normalise -> resizer ->
classifier, eval mode, batch 1, the ImageNet configs' 1000 classes and bfloat16 compute)
is compiled twice, behind the fixed bilinear resize at `output_size` (the `baseline`
stage) and behind the learned resizer `input_size` -> `output_size` (the `learned`
stage), and the FLOPs come from XLA's cost analysis of the compiled program
(`jax.jit(f).lower(...).compile().cost_analysis()['flops']`). Nothing is allocated: the
models are built with `nnx.eval_shape` and lowered from shapes.

Two counts are printed because they differ by convention:
  * XLA's `flops` counts a multiply-add as 2 FLOPs, adds the elementwise work
    (BatchNorm, activations, normalisation, resizes) and leaves out the taps of a
    convolution that fall on padding;
  * `GMACs` are the multiply-adds of the convolutions and dense layers alone (every
    kernel tap, the usual convention of FLOP counters), counted from the traced program
    (jaxpr) independently of XLA.
The paper's "FLOPs" are 2 x multiply-adds, the same convention as XLA's, not
multiply-adds: DenseNet-121 has 2.83 GMACs at 224 (2 x 2.83 = 5.67, the paper's
figure), and the n=16, r=1 resizer 448 -> 224 adds 0.988 GMACs (2 x 0.988 = 1.98 =
7.65 - 5.67). XLA's own counts are a few percent higher (5.81 -> 7.96) for the
elementwise work.

With `--estimate` (the default) it also prints the training time of each backbone's
two-stage ImageNet recipe (`configs/imagenet.py`) on a TPU v4-8 and on
8 A100s, estimated as 3 x XLA forward FLOPs per training image (forward + backward),
epochs x 1,281,167 images, at 40-50% model FLOPs utilisation (MFU) of the chips'
dense bf16 peak (v4: 275 TFLOP/s per chip, 4 chips in a v4-8; A100: 312 TFLOP/s).
Evaluation passes (forward only, 50k images) add about 1% and are left out. These
are compute-bound lower bounds: convnets rarely reach 40% MFU (NVIDIA's published
8 x A100 mixed-precision ResNet-50 v1.5 throughput, 16,621 images/s in
DeepLearningExamples/PyTorch, is 16% MFU by this count, about 3 h for 90 epochs);
depthwise convolutions (MobileNet-v2, EfficientNet) and the resizer's 3-channel 7x7
convolutions use the matrix units poorly; and the input pipeline must decode and
crop that many JPEGs per second. Pass `--mfu=0.15,0.25` for a cautious range.
"""

import dataclasses
import math
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags
from flax import nnx

from learned_resize import models
from learned_resize.config import defaults as config_defaults
from learned_resize.models import resized, resizers
from learned_resize.runtime import cli, compiled_stats
from learned_resize.tools import cost_tables

# The recipe's config file (the checkout's; the flops tool runs from a checkout).
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGENET_CONFIG = os.path.join(_REPO, "configs", "imagenet.py")
# The backbones of the paper (and EfficientNet-B0, which it mentions), plus ResNet-18.
DEFAULT_BACKBONES = (
    "resnet18",
    "resnet50",
    "densenet121",
    "inception_v2",
    "mobilenet_v2",
    "efficientnet_b0",
)


@dataclasses.dataclass(frozen=True)
class Cost:
    """Forward cost of one image."""

    params: int  # trainable parameters (nnx.Param)
    flops: float  # XLA cost analysis of the compiled forward pass
    macs: float  # multiply-adds of convolutions and dense layers, from the jaxpr
    resize_macs: float  # multiply-adds of jax.image.resize's dense weight products


# --------------------------------------------------------------------------- counting


def xla_flops(fn, *args) -> float:
    """FLOPs of `jax.jit(fn)(*args)` per XLA's cost analysis (args may be ShapeDtypeStructs)."""
    return compiled_stats.xla_flops(jax.jit(fn).lower(*args).compile())


def _sub_jaxprs(value):
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, jax.extend.core.Jaxpr):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _sub_jaxprs(v)


def _eqn_macs(eqn) -> float:
    name = eqn.primitive.name
    if name == "conv_general_dilated":
        out = eqn.outvars[0].aval
        rhs = eqn.invars[1].aval
        out_features = rhs.shape[eqn.params["dimension_numbers"].rhs_spec[0]]
        # Each output value sums kernel_h * kernel_w * (in_features / groups) products
        # (padding included, the usual convention; XLA's count leaves padded taps out).
        return math.prod(out.shape) * math.prod(rhs.shape) / out_features
    if name == "dot_general":
        (lhs_contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        depth = math.prod(lhs.shape[d] for d in lhs_contract)
        return math.prod(eqn.outvars[0].aval.shape) * depth
    return 0.0


def _jaxpr_macs(jaxpr, in_resize: bool = False) -> tuple[float, float]:
    layers = resize = 0.0
    for eqn in jaxpr.eqns:
        macs = _eqn_macs(eqn)
        if in_resize:
            resize += macs
        else:
            layers += macs
        # jax.image.resize runs inside a jit named `_resize`: its products are the resize's.
        inner = in_resize or eqn.params.get("name") in _RESIZE_FUNCTIONS
        if eqn.primitive.name == "cond":
            # One branch runs (lax.platform_dependent's alternatives compute the same
            # function, e.g. cpu_conv.same_conv): count the costliest.
            branches = [_jaxpr_macs(b.jaxpr, inner) for b in eqn.params["branches"]]
            sub_layers, sub_resize = max(branches, key=sum)
            layers += sub_layers
            resize += sub_resize
            continue
        for value in eqn.params.values():
            for sub in _sub_jaxprs(value):
                sub_layers, sub_resize = _jaxpr_macs(sub, inner)
                layers += sub_layers
                resize += sub_resize
    return layers, resize


# Names of the jitted functions that implement jax.image.resize / scale_and_translate.
_RESIZE_FUNCTIONS = ("_resize", "_scale_and_translate", "scale_and_translate")


def conv_dense_macs(fn, *args) -> tuple[float, float]:
    """Multiply-adds of `fn(*args)`: (convolutions and dense layers, the resizes' products).

    `jax.image.resize` computes each axis as a product with a dense [in, out] weight
    matrix, so it costs `in` multiply-adds per output value and axis; it is counted
    apart from the layers because the usual FLOP counters (and the paper) leave it out.
    """
    return _jaxpr_macs(jax.make_jaxpr(fn)(*args).jaxpr)


def module_cost(
    build, input_shape: Sequence[int], input_dtype=jnp.float32, use_xla: bool = True
) -> Cost:
    """Forward cost per image of the module `build()` in eval mode, without allocating it.

    Args:
      build: a function returning an nnx.Module whose `__call__(x, train)` is measured.
      input_shape: [1, H, W, C] (batch 1, so the counts are per image).
      input_dtype: dtype of the input.
      use_xla: False skips XLA (flops = nan): tracing alone gives params and GMACs.

    Returns:
      A `Cost`.
    """
    graphdef, state = nnx.split(nnx.eval_shape(build))

    def forward(state, x):
        return nnx.merge(graphdef, state)(x, train=False)

    params = sum(math.prod(x.shape) for x in jax.tree.leaves(nnx.state(state, nnx.Param)))
    x = jax.ShapeDtypeStruct(tuple(input_shape), input_dtype)
    flops = xla_flops(forward, state, x) if use_xla else math.nan
    return Cost(params, flops, *conv_dense_macs(forward, state, x))


# --------------------------------------------------------------------------- the models


def stage_config(
    backbone: str,
    input_size: int,
    output_size: int,
    learned: bool,
    num_filters: int = 16,
    num_res_blocks: int = 1,
    dtype: str = "bfloat16",
) -> ml_collections.ConfigDict:
    """The ImageNet recipe's model for one stage: bilinear (baseline) or learned."""
    config = cli.load_config(f"{IMAGENET_CONFIG}:{backbone}")
    config.input_size = (output_size, output_size)
    config.model.dtype = dtype
    config.resizer.output_size = (output_size, output_size)
    if learned:
        config.input_size = (input_size, input_size)
        config.resizer.kind = "learned"
        config.resizer.num_filters = num_filters
        config.resizer.num_res_blocks = num_res_blocks
    return config


def model_cost(config: ml_collections.ConfigDict, use_xla: bool = True) -> Cost:
    """Forward cost per image of the trainer's model (uint8 images in) for `config`."""
    h, w = config.input_size
    return module_cost(
        lambda: resized.build_model(config, rngs=nnx.Rngs(0)),
        (1, h, w, config.data.channels),
        jnp.uint8,
        use_xla,
    )


def resizer_cost(input_size: int, output_size: int, num_filters=16, num_res_blocks=1) -> Cost:
    """Forward cost per image of the learned resizer alone (float32 input)."""
    return module_cost(
        lambda: resizers.LearnedResizer(
            (output_size, output_size),
            num_filters=num_filters,
            num_res_blocks=num_res_blocks,
            antialias=False,  # the configs' setting
            rngs=nnx.Rngs(0),
        ),
        (1, input_size, input_size, 3),
    )


def backbone_costs(backbone: str, input_size: int, output_size: int, **resizer) -> dict:
    """{'bilinear': Cost, 'learned': Cost} of the two stages' models for `backbone`."""
    return {
        kind: model_cost(
            stage_config(backbone, input_size, output_size, kind == "learned", **resizer)
        )
        for kind in ("bilinear", "learned")
    }


# --------------------------------------------------------------------------- CLI


def _define_flags() -> dict:
    """The CLI's flags, defined only when this module runs as a program: importing it
    (tests, benchmarks, launch/sweep.py) must not claim flag names like --num_filters."""
    return {
        "backbones": flags.DEFINE_list(
            "backbones", list(DEFAULT_BACKBONES), "Classifiers to measure."
        ),
        "input_size": flags.DEFINE_integer(
            "input_size", 448, "The learned resizer's input (square)."
        ),
        "output_size": flags.DEFINE_integer("output_size", 224, "The classifier's input (square)."),
        "num_filters": flags.DEFINE_integer("num_filters", 16, "The learned resizer's n."),
        "num_res_blocks": flags.DEFINE_integer("num_res_blocks", 1, "The learned resizer's r."),
        "estimate": flags.DEFINE_bool(
            "estimate", True, "Also print the ImageNet training-time table."
        ),
        "mfu": flags.DEFINE_list(
            "mfu",
            [str(m) for m in cost_tables.MFU_RANGE],
            "Range of model FLOPs utilisation for the estimate.",
        ),
    }


def main(argv, flag):
    """Prints the cost tables; `flag` holds the flags of `_define_flags`."""
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    unknown = sorted(set(flag["backbones"].value) - set(models.available_classifiers()))
    if unknown:
        raise app.UsageError(
            f"Unknown --backbones {unknown}; choose from {models.available_classifiers()}."
        )
    minimum = config_defaults.MIN_INPUT_SIZE
    too_small = [b for b in flag["backbones"].value if flag["output_size"].value < minimum[b]]
    if too_small:
        raise app.UsageError(
            f"--output_size={flag['output_size'].value} is below the minimum input of {too_small}."
        )
    sizes = dict(input_size=flag["input_size"].value, output_size=flag["output_size"].value)
    resizer = dict(
        num_filters=flag["num_filters"].value, num_res_blocks=flag["num_res_blocks"].value
    )
    costs = {}
    for name in flag["backbones"].value:
        print(f"compiling {name} ...", flush=True)
        costs[name] = backbone_costs(name, **sizes, **resizer)
    alone = resizer_cost(**sizes, **resizer)
    print(
        f"\nForward cost per image (eval mode, batch 1, bf16 compute, 1000 classes; XLA "
        f"cost analysis on {jax.devices()[0].platform}):\n"
    )
    print(cost_tables.cost_table(costs, alone, **sizes))
    note = cost_tables.paper_comparison(costs)
    if note:
        print("\n" + note)
    if flag["estimate"].value:
        defaults = cli.load_config(f"{IMAGENET_CONFIG}:resnet50")
        epochs = (defaults.num_epochs, defaults.stages.learned.num_epochs)
        mfu = sorted(float(m) for m in flag["mfu"].value)
        mfu = (mfu[0], mfu[-1])
        peaks = ", ".join(
            f"{a.name} {a.chips} x {a.peak_tflops:g} TFLOP/s" for a in cost_tables.ACCELERATORS
        )
        print(
            f"\nEstimated ImageNet training time: baseline {epochs[0]:g} epochs at "
            f"{sizes['output_size']}, learned {epochs[1]:g} epochs at {sizes['input_size']}"
            f"->{sizes['output_size']}; {cost_tables.TRAIN_FLOPS_PER_FORWARD:g} x XLA forward "
            f"FLOPs per image, {cost_tables.NUM_TRAIN_IMAGES:,} images per epoch, "
            f"{mfu[1]:.0%}-{mfu[0]:.0%} of the bf16 peak ({peaks}):\n"
        )
        print(cost_tables.estimate_table(costs, *epochs, mfu_range=mfu))


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    cli.run_tool(_define_flags, main)


if __name__ == "__main__":
    console()
