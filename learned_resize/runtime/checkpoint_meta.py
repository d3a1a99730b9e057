"""What a checkpoint says it is: the model meta saved beside its state, and the rule
that refuses a checkpoint of another model in one sentence naming the differing values
(resume, `--mode=eval`, `config.init_from`)."""

import ml_collections
import numpy as np

from learned_resize.runtime import errors


def model_meta(config: ml_collections.ConfigDict) -> dict:
    """What a checkpoint must agree on to be restored into this config's model.

    Everything that changes a parameter's shape (task, backbone, classes, channels, the
    resizer's kind, filters, residual blocks and norm) and everything that changes what
    the parameters mean without changing a shape: the resizer's input and output sizes,
    its interpolation and antialiasing (a learned resizer corrects that fixed resize, a
    classifier was trained on its output). Data settings (crop, normalisation) are the
    data's, not the model's: they are not recorded.
    """
    return {
        "task": config.task,
        "model": config.model.name,
        "num_classes": int(config.data.num_classes),
        "channels": int(config.data.channels),
        "resizer": config.resizer.kind,
        "input_size": [int(s) for s in config.input_size],
        "output_size": [int(s) for s in config.resizer.output_size],
        "resizer_filters": int(config.resizer.num_filters),
        "resizer_blocks": int(config.resizer.num_res_blocks),
        "resizer_norm": config.resizer.norm,
        "resizer_interpolation": config.resizer.interpolation,
        "resizer_antialias": bool(config.resizer.antialias),
    }


# How each meta key is named in the sentence that refuses a checkpoint.
_LABELS = {
    "task": "task",
    "model": "backbone",
    "num_classes": "classes",
    "channels": "channels",
    "resizer": "resizer kind",
    "input_size": "input size",
    "output_size": "resizer output size",
    "resizer_filters": "resizer filters",
    "resizer_blocks": "resizer residual blocks",
    "resizer_norm": "resizer norm",
    "resizer_interpolation": "resizer interpolation",
    "resizer_antialias": "resizer antialias",
}
# Settings that only a learned resizer has parameters for (a fixed one ignores them).
_LEARNED_ONLY = ("resizer_filters", "resizer_blocks", "resizer_norm", "resizer_interpolation")
_SIZES = ("input_size", "output_size")

# Meta keys added later, with the value every checkpoint saved before them had. The keys
# added after it (the sizes, interpolation, antialias) are not checked against a
# checkpoint that lacks them: no parameter's shape tells them (every backbone here ends
# in a global average pool and the learned resizer is fully convolutional), and what
# the shapes do tell (channels, classes, filters, blocks) every saved meta records.
_META_DEFAULTS = {"resizer_norm": "batch"}


def _value(key: str, value):
    """A meta value as compared and shown: sizes as tuples (JSON stores lists)."""
    if key in _SIZES and value is not None:
        return tuple(int(v) for v in value)
    return value


def meta_differences(found: dict, expected: dict, keys=None) -> list[str]:
    """`expected`'s values that `found` (a saved meta) contradicts, each as
    'resizer output size (8, 8) (this config: (20, 20))'.

    Args:
      found: the checkpoint's meta; keys it lacks (saved before they were recorded) are
        not compared.
      expected: `model_meta` of this config.
      keys: the keys to compare; default all, the learned resizer's own settings only
        when both resizers are learned.
    """
    found = {**_META_DEFAULTS, **found}
    if keys is None:
        both_learned = found.get("resizer") == expected.get("resizer") == "learned"
        keys = [k for k in expected if both_learned or k not in _LEARNED_ONLY]
    diffs = []
    for key in keys:
        if key not in found or _value(key, found[key]) == _value(key, expected[key]):
            continue
        diffs.append(
            f"{_LABELS.get(key, key)} {_value(key, found[key])!r} "
            f"(this config: {_value(key, expected[key])!r})"
        )
    return diffs


def _refuse(where: str, diffs: list[str]) -> errors.UserError:
    return errors.UserError(
        f"the checkpoint at {where} is of a different model: {', '.join(diffs)}; point to a "
        "checkpoint of this model, use another workdir, or change the config to match it."
    )


def check_meta(found: dict, expected: dict, where: str) -> None:
    diffs = meta_differences(found, expected)
    if diffs:
        raise _refuse(where, diffs)


def _scale(meta: dict) -> tuple[float, ...] | None:
    if not all(k in meta for k in _SIZES):
        return None
    return tuple(i / o for i, o in zip(meta["input_size"], meta["output_size"], strict=True))


def check_parts_meta(found: dict, expected: dict, parts, where: str) -> None:
    """Refuses a source whose `parts` (of 'classifier', 'resizer', 'score_head') do not
    fit this config's model, in one sentence.

    Only what the loaded parts depend on is compared. A classifier may be fine-tuned at
    another input size (the head's sizes are then checked leaf by leaf by `merge_parts`),
    so sizes do not matter for it. A learned resizer is convolutional: it runs at any
    absolute size, but its filters were trained for one ratio between its input and
    output grids (448 -> 224 is a 2x downscale, 28 -> 8 a 3.5x one, a different task), so
    for the resizer the scale factor input/output must match (within 0.1%), not the sizes.
    """
    found = {**_META_DEFAULTS, **found}
    if "resizer" in parts and found.get("resizer") != "learned":
        raise errors.UserError(
            f"the checkpoint at {where} has no learned resizer (resizer="
            f"{found.get('resizer')!r}); take the resizer from a run with "
            "config.resizer.kind='learned'."
        )
    keys = ["channels"]
    if "classifier" in parts:  # Head sizes may differ (IQA from ImageNet): shapes decide.
        keys += ["model"]
    if "score_head" in parts:
        keys += ["task", "num_classes"]
    if "resizer" in parts:
        keys += [*_LEARNED_ONLY, "resizer_antialias"]
    diffs = meta_differences(found, expected, keys)
    if "resizer" in parts:
        have, want = _scale(found), _scale(expected)
        if have is not None and want is not None and not np.allclose(have, want, rtol=1e-3):
            diffs.append(
                f"resizer scale {_value('input_size', found['input_size'])} -> "
                f"{_value('output_size', found['output_size'])} (this config: "
                f"{_value('input_size', expected['input_size'])} -> "
                f"{_value('output_size', expected['output_size'])})"
            )
    if diffs:
        raise _refuse(where, diffs)
