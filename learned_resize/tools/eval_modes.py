r"""Does eval mode match training? Top-1 with running averages vs batch statistics.

    python -m learned_resize.tools.eval_modes --checkpoint=W/learned

restores a classification run's newest checkpoint and evaluates its eval split
three ways:

  eval                 the trainer's eval: every BatchNorm uses its running averages;
  resizer_batch_stats  the resizer's normalisation uses each eval batch's statistics
                       (train mode), the classifier its running averages;
  batch_stats          train mode everywhere (no dropout in the classifiers this
                       applies to): what the training accuracy saw.

A resizer whose running averages disagree with its batch statistics (the failure
one PyTorch port shows in eval mode) makes `eval` fall below the other two. In the
batch-statistics modes every batch must hold real images only, so the padding rows
of the last eval batch are filled with copies of its real images (and still
masked out of the counts). Prints one JSON line per mode and a markdown table.
A mistake (a bad flag, a missing or non-classification checkpoint) is one line
`error: ...` on stderr, exit status 1.
"""

import json
import os
import sys

import jax
import numpy as np
from absl import flags

from learned_resize.runtime import cli, errors

MODES = ("eval", "resizer_batch_stats", "batch_stats")


def restore_steps(config, path: str):
    """(steps.Steps, state, rest) for the newest checkpoint under `path`, as --mode=eval."""
    from learned_resize import steps as steps_lib
    from learned_resize.config import validation
    from learned_resize.runtime import checkpoint_meta, checkpoints, mesh

    validation.validate_config(config)
    steps = steps_lib.Steps(config, mesh.create_mesh(), steps_per_epoch=1, num_steps=1)
    state, _ = checkpoints.restore_for_eval(
        os.path.abspath(path), steps.sharded_abstract_state(), checkpoint_meta.model_meta(config)
    )
    _, rest = steps.init(jax.random.key(config.seed))
    return steps, state, rest


def fill_padding(images: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`images` with every mask=0 row replaced by a real row (cyclically), for batch stats."""
    real = np.flatnonzero(mask > 0)
    pad = np.flatnonzero(mask <= 0)
    if not len(real) or not len(pad):
        return images
    out = images.copy()
    out[pad] = images[real[np.arange(len(pad)) % len(real)]]
    return out


def _logits(trainer, mode: str):
    def logits(state, images, rest):
        model = trainer._model(state["params"], state["batch_stats"], rest)  # a copy
        if mode == "eval":
            return model(images, train=False)
        if mode == "resizer_batch_stats":
            return model.classifier(model.resize(images, train=True), train=False)
        return model(images, train=True)

    return jax.jit(logits)


def evaluate_modes(config, path: str, modes=MODES) -> dict:
    """{mode: {'top1', 'num_examples'}} over the eval split of the run at `path`."""
    from learned_resize.data import pipeline
    from learned_resize.runtime import mesh

    if config.task != "classification":
        raise ValueError(f"eval_modes compares top-1 of classification runs; {path} is IQA.")
    trainer, state, rest = restore_steps(config, path)
    batches, _ = pipeline.create_eval_iterator(config, image_size=tuple(config.input_size))
    functions = {mode: _logits(trainer, mode) for mode in modes}
    correct = dict.fromkeys(modes, 0.0)
    count = 0.0
    for local in batches:
        mask = local["mask"]
        images = fill_padding(local["image"], mask)
        batch = mesh.global_batch({"image": images}, trainer.mesh)
        for mode, fn in functions.items():
            predicted = np.asarray(jax.device_get(fn(state, batch["image"], rest))).argmax(-1)
            correct[mode] += float(np.sum((predicted == local["label"]) * mask))
        count += float(mask.sum())
    return {
        mode: {"top1": correct[mode] / max(count, 1.0), "num_examples": count} for mode in modes
    }


def define_flags(values: flags.FlagValues = flags.FLAGS) -> dict:
    """The command line's flags, in `values`. Defined only when this module runs as a
    program (or by a test, in its own FlagValues): importing it claims no flag names."""
    return dict(
        checkpoint=flags.DEFINE_string(
            "checkpoint", None, "Workdir of a classification run (required).", flag_values=values
        )
    )


def main(argv: list[str], flag: dict) -> int:
    """Evaluates --checkpoint every way; `flag` holds the parsed flags of `define_flags`."""
    checkpoint = flag["checkpoint"].value
    try:
        if len(argv) > 1:
            raise errors.UserError(
                f"unexpected arguments {' '.join(argv[1:])}; flags start with --."
            )
        if not checkpoint:
            raise errors.UserError(
                "give --checkpoint=WORKDIR, the workdir of a classification run (e.g. W/learned)."
            )
        from learned_resize.tools import export

        config = export.run_config(checkpoint)
        results = evaluate_modes(config, checkpoint)
    except (ValueError, FileNotFoundError) as e:
        print(errors.one_line(e), file=sys.stderr)
        return 1
    for mode, r in results.items():
        print(json.dumps({"mode": mode, **r}))
    print("| mode | top-1 |\n|---|---|")
    for mode, r in results.items():
        print(f"| {mode} | {r['top1']:.4f} |")
    return 0


def console() -> None:
    """The console script (pyproject.toml [project.scripts]); `python -m` runs it too."""
    cli.run_tool(define_flags, main)


if __name__ == "__main__":
    console()
