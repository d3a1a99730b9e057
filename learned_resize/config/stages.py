"""Config keys and stages: dotted key names, unknown-key hints, and `config.stages`
expanded into one config per stage."""

import copy
import difflib

import ml_collections

from learned_resize.runtime import errors


def flat_keys(config: ml_collections.ConfigDict, prefix: str = "") -> list[str]:
    """Every leaf key of `config` as a dotted path ('optim.learning_rate', ...)."""
    keys = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, ml_collections.ConfigDict) and key != "stages":
            keys += flat_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def _is_abbreviation(short: str, long: str) -> bool:
    """'lr' of 'learning_rate', 'batch_sz' of 'batch_size': letters in order, same start."""
    if not short or short[0] != long[0]:
        return False
    rest = iter(long)
    return all(ch in rest for ch in short)


def unknown_key_message(
    key: str, config: ml_collections.ConfigDict, defaults: str = "learned_resize/config/defaults.py"
) -> str:
    """One sentence naming `key` as unknown and the closest valid key (else `defaults`,
    the file that lists them)."""
    valid = flat_keys(config)
    group, _, last = key.rpartition(".")
    siblings = [k for k in valid if k.rpartition(".")[0] == group]
    close = [k for k in siblings if _is_abbreviation(last, k.rpartition(".")[2])]
    close = close or difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean config.{close[0]}?" if close else f"see {defaults}"
    return f"unknown config key config.{key}; {hint}"


def stage_configs(config: ml_collections.ConfigDict, workdir: str, cli_keys=()):
    """Expands `config.stages` into (name, workdir, config) triples, in order.

    Each stage is a ConfigDict of overrides applied to the base config, plus an
    optional `init_from_stage` naming an earlier stage whose checkpoint
    initialises `init_from.parts`. With no stages, the config is one run in
    `workdir` itself.

    Args:
      config: the experiment's config.
      workdir: the experiment's workdir; stage `s` runs in `workdir/s`.
      cli_keys: dotted keys set on the command line (`--config.num_epochs=1` ->
        'num_epochs'). They win over a stage's own value for the same key, so a
        command-line value applies to every stage; `--config.stages.NAME.KEY=...`
        sets one stage's value.
    """
    if not config.stages:
        return [("run", workdir, config)]
    names = list(config.stages.keys())
    parents = {name: config.stages[name].get("init_from_stage", "") for name in names}
    for name, parent in parents.items():
        if parent and parent not in names:
            raise errors.UserError(
                f"stage {name!r} starts from {parent!r}, which is not a stage; use one of "
                f"{', '.join(names)}."
            )
    # Parents before children; otherwise in name order (ConfigDict keys are sorted).
    order, todo = [], list(names)
    while todo:
        ready = [n for n in todo if not parents[n] or parents[n] in order]
        if not ready:
            raise errors.UserError(f"config.stages {todo} start from each other in a cycle.")
        order.append(ready[0])
        todo.remove(ready[0])
    cli_keys = {k for k in cli_keys if not k.startswith("stages.")}
    out = []
    for name in order:
        overrides = config.stages[name].to_dict()
        c = copy.deepcopy(config)
        with c.unlocked():
            c.stages = ml_collections.ConfigDict()
        parent = overrides.pop("init_from_stage", "")
        _apply_overrides(c, overrides, f"stages.{name}", "", cli_keys)
        if parent:  # The chain itself, not an overlay: a command-line init_from.path is
            c.init_from.path = f"{workdir}/{parent}"  # for the stages without a parent.
        out.append((name, f"{workdir}/{name}", c))
    return out


def _apply_overrides(config, overrides: dict, prefix: str, path: str, cli_keys: set):
    for key, value in overrides.items():
        if key not in config:
            raise errors.UserError(
                f"unknown config key {prefix}.{key}; stage overrides may only set keys that "
                "config.defaults.base_config() has."
            )
        if isinstance(value, dict):
            _apply_overrides(config[key], value, f"{prefix}.{key}", f"{path}{key}.", cli_keys)
        elif f"{path}{key}" not in cli_keys:
            config[key] = value
