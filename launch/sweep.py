r"""Ablation sweeps over the learned resizer: one training run per grid point, then a table.

The grid is the resizer's width n (`--num_filters`), its residual blocks r
(`--num_res_blocks`) and its input size (`--input_sizes`, square `448` or `HxW`);
each point is a plain `python -m learned_resize.main` run with `--config.*`
overrides, in `WORKDIR/<point>` (e.g. `WORKDIR/n16_r2_in368`). Points run one after
another on this host; a point that already has its results.json is skipped, and an
interrupted one resumes from its checkpoint when the sweep is run again.

Small configs without stages (the overrides go to `config.resizer.*`, `config.input_size`):

    python launch/sweep.py --config=configs/default.py --workdir=workdirs/sweep \
        --num_filters=8,16 --num_res_blocks=1,2 -- --config.num_epochs=1

The ImageNet configs: sweep their `learned` stage (`--stage=learned` sends the
overrides to `config.stages.learned.*` and runs only that stage), every point
starting from one baseline trained once (`--init_from`):

    python -m learned_resize.main --config=configs/imagenet_resnet50.py --workdir=W \
        --stages=baseline
    python launch/sweep.py --config=configs/imagenet_resnet50.py --workdir=W/sweep \
        --stage=learned --init_from=W/baseline --num_filters=16,32 \
        --num_res_blocks=1,2,3,4 --input_sizes=224,256,320,368,448

Arguments after `--` go to every run. Every point's config is built and checked as the
trainer checks it (`validation.validate_config` on each of its stages) before anything
runs or is written, so a bad value is one `error:` line (exit status 1) for the whole
sweep. `--dry_run` prints the commands only; `--collect` prints (and writes to
WORKDIR/sweep_results.md) a markdown table of every point's final metrics, read from its
results.json, or for unfinished points from the last entries of its metrics.jsonl.
"""

import itertools
import json
import os
import shlex
import subprocess
import sys

from absl import app, flags
from etils import epath  # local paths and gs:// alike, as Orbax uses

from learned_resize.runtime import cli, errors

# allow_override: the test process also imports the retargeting CLI, which has its own
# --config; only one of them ever parses the command line.
_CONFIG = flags.DEFINE_string(
    "config", None, "Config file, as for learned_resize.main.", allow_override=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory; each point runs in a subdir.")
_STAGE = flags.DEFINE_string(
    "stage", "", "Sweep this stage of config.stages (and run only it); '' for configs without."
)
_INIT_FROM = flags.DEFINE_string(
    "init_from", "", "With --stage: initialise the stage from this run instead of its parent stage."
)
_NUM_FILTERS = flags.DEFINE_list("num_filters", [], "Values of n (config resizer.num_filters).")
_NUM_RES_BLOCKS = flags.DEFINE_list(
    "num_res_blocks", [], "Values of r (config resizer.num_res_blocks)."
)
_INPUT_SIZES = flags.DEFINE_list(
    "input_sizes", [], "Resizer input sizes (config input_size): 448 for 448x448, or 368x320."
)
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Print the commands, run nothing.")
_COLLECT = flags.DEFINE_bool("collect", False, "Only print the results table of WORKDIR.")

SWEEP_FILE = "sweep.json"
RESULTS_FILE = "sweep_results.md"
# Final metrics shown when present: (column, key in results.json / 'eval/<key>' in metrics.jsonl).
EVAL_COLUMNS = (
    ("top-1", "top1"),
    ("top-5", "top5"),
    ("eval loss", "loss"),
    ("PLCC", "plcc"),
    ("SRCC", "srcc"),
    ("EMD", "emd"),
)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, _, w = text.lower().partition("x")
        size = (int(h), int(w or h))
    except ValueError:
        raise errors.UserError(
            f"--input_sizes value {text!r} is not a size; give e.g. 448 or 368x320."
        ) from None
    if min(size) <= 0:
        raise errors.UserError(f"--input_sizes value {text!r} must be positive; e.g. 448.")
    return size


def _parse_ints(name: str, values) -> list[int]:
    try:
        return [int(v) for v in values]
    except ValueError:
        raise errors.UserError(f"--{name} takes integers, got {','.join(values)}.") from None


def grid_points(num_filters=(), num_res_blocks=(), input_sizes=()) -> list[dict]:
    """Every combination of the given axis values.

    Returns:
      A list of {'name': str, 'axes': {axis: value}} in grid order; an empty axis is
      not swept (the config's value is kept) and does not appear in the names.
    """
    axes = [
        ("n", "resizer.num_filters", list(num_filters)),
        ("r", "resizer.num_res_blocks", list(num_res_blocks)),
        ("in", "input_size", [tuple(s) for s in input_sizes]),
    ]
    axes = [a for a in axes if a[2]]
    if not axes:
        raise errors.UserError(
            "Nothing to sweep; give --num_filters, --num_res_blocks or --input_sizes."
        )
    points = []
    for values in itertools.product(*(a[2] for a in axes)):
        parts, overrides = [], {}
        for (short, key, _), value in zip(axes, values):
            if isinstance(value, tuple):
                parts.append(
                    f"{short}{value[0]}"
                    if value[0] == value[1]
                    else f"{short}{value[0]}x{value[1]}"
                )
            else:
                parts.append(f"{short}{value}")
            overrides[key] = value
        points.append({"name": "_".join(parts), "overrides": overrides})
    return points


def _flag_value(value) -> str:
    if isinstance(value, tuple):
        return "(" + ",".join(str(v) for v in value) + ")"
    return str(value)


def point_command(
    config: str, workdir: str, point: dict, stage: str = "", init_from: str = "", extra=()
) -> list[str]:
    """The `learned_resize.main` command line of one grid point."""
    prefix = f"--config.stages.{stage}." if stage else "--config."
    cmd = [
        sys.executable,
        "-m",
        "learned_resize.main",
        f"--config={config}",
        f"--workdir={os.path.join(workdir, point['name'])}",
    ]
    cmd += [f"{prefix}{key}={_flag_value(v)}" for key, v in point["overrides"].items()]
    if stage:
        cmd.append(f"--stages={stage}")
    if init_from:
        # The stage then takes its classifier from `init_from` instead of `<point>/<parent>`.
        cmd += [f"--config.stages.{stage}.init_from_stage=", f"--config.init_from.path={init_from}"]
    return cmd + list(extra)


def _point_dir(workdir: str, name: str, stage: str) -> epath.Path:
    return epath.Path(workdir) / name / stage if stage else epath.Path(workdir) / name


def _read_point(directory: epath.Path) -> dict:
    """Final metrics of one run: results.json, else the last logged values."""
    row = {"status": "missing"}
    log_path = directory / "metrics.jsonl"
    if log_path.exists():
        for line in log_path.read_text().splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            row["step"] = entry.get("step", row.get("step"))
            for key, value in entry.items():
                if key.startswith(("train/", "eval/")):
                    row[key] = value
        row["status"] = "running"
    results_path = directory / "results.json"
    if results_path.exists():
        results = json.loads(results_path.read_text())
        row.update({f"eval/{k}": v for k, v in results.items() if k != "train_seconds"})
        row["train_seconds"] = results.get("train_seconds")
        row["status"] = "done"  # results.json is written only once a run has finished
    return row


def collect(workdir: str) -> str:
    """A markdown table of every point of the sweep in `workdir` (see `--collect`)."""
    path = epath.Path(workdir) / SWEEP_FILE
    if not path.exists():
        raise errors.UserError(
            f"No {SWEEP_FILE} in {workdir}; run the sweep there first (without --collect)."
        )
    sweep = json.loads(path.read_text())
    rows = []
    for point in sweep["points"]:
        row = _read_point(_point_dir(workdir, point["name"], sweep["stage"]))
        rows.append((point, row))
    axes = list(sweep["points"][0]["overrides"])
    columns = [(c, k) for c, k in EVAL_COLUMNS if any(f"eval/{k}" in r for _, r in rows)]
    head = ["point", *axes, "status", "step", *(c for c, _ in columns), "train loss", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for point, row in rows:
        cells = [point["name"]]
        cells += [
            _flag_value(tuple(v) if isinstance(v, list) else v) for v in point["overrides"].values()
        ]
        cells += [row["status"], str(row.get("step", ""))]
        cells += [_number(row.get(f"eval/{k}")) for _, k in columns]
        cells += [_number(row.get("train/loss")), _number(row.get("train_seconds"), "{:.0f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value, fmt="{:.4f}") -> str:
    return "" if value is None else fmt.format(value)


def run(points, commands, workdir: str, stage: str) -> list[str]:
    """Runs the points' commands one after another; returns the names of failed points."""
    failed = []
    for i, (point, cmd) in enumerate(zip(points, commands)):
        name, where = point["name"], f"[{i + 1}/{len(points)}] {point['name']}"
        if (_point_dir(workdir, name, stage) / "results.json").exists():
            print(f"{where}: done already, skipped", flush=True)
            continue
        print(f"{where}: {shlex.join(cmd)}", flush=True)
        code = subprocess.run(cmd).returncode  # The run's own progress goes to our stdout.
        if code == errors.EXIT_PREEMPTED:  # This host is going away: stop, say how to resume.
            print(f"{where}: preempted; run the same sweep command again to continue", flush=True)
            sys.exit(errors.EXIT_PREEMPTED)
        if code:
            print(f"{where}: failed with exit code {code}", flush=True)
            failed.append(name)
    return failed


def _write(workdir: str, name: str, text: str) -> None:
    path = epath.Path(workdir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _flag_error(argv, exc: Exception) -> errors.UserError:
    try:
        return cli.explain_flag_error(argv, exc)
    except errors.UserError as e:  # (the config file itself does not load)
        return e


def point_configs(config: str, workdir: str, point: dict, stage: str = "", extra=()) -> list:
    """The (stage name, config) pairs `learned_resize.main` would train for one point.

    The point's overrides and the `--config.*` arguments in `extra` are applied as the
    trainer's flags apply them; raises errors.UserError for an unknown key or stage.
    """
    from ml_collections import config_flags

    from learned_resize.config import stages as stages_lib

    names = list(cli.load_config(config).stages.keys())
    if stage and stage not in names:
        raise errors.UserError(
            f"--stage={stage} is not a stage of {config} (its config.stages: "
            f"{', '.join(names) or 'none'}); give one of them, or no --stage."
        )
    cmd = point_command(config, workdir, point, stage, "", extra)
    argv = ["main", f"--config={config}", *(a for a in cmd if a.startswith("--config."))]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file(
        "config", None, flag_values=values, lock_config=True, sys_argv=argv
    )
    try:
        values(argv)
        parsed = values.config
        parsed.keys  # noqa: B018  (the file is loaded lazily: load errors surface here)
    except Exception as e:  # config_flags raises assorted types (see cli.explain_flag_error).
        raise _flag_error(argv, e) from None
    point_dir = os.path.join(workdir, point["name"])
    stages = stages_lib.stage_configs(parsed, point_dir, cli.cli_config_keys(argv))
    return [(name, c) for name, _, c in stages if not stage or name == stage]


def validate_points(config: str, workdir: str, points, stage: str = "", extra=()) -> None:
    """Checks every point's configs as the trainer would; the first bad one is an error."""
    from learned_resize.config import validation

    for point in points:
        for name, stage_config in point_configs(config, workdir, point, stage, extra):
            try:
                validation.validate_config(stage_config)
            except errors.UserError as e:
                where = f"point {point['name']}" + (f", stage {name}" if stage else "")
                raise errors.UserError(f"{where}: {errors.brief(e)}") from None


def main(argv):
    try:
        _main(argv[1:])  # everything after `--`
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        errors.exit_with(e, errors.EXIT_USER_ERROR)  # UserError is a ValueError


def _main(extra) -> None:
    if not _WORKDIR.value:
        raise errors.UserError("give --workdir, the sweep directory.")
    workdir = _absolute(_WORKDIR.value)
    if _COLLECT.value:
        table = collect(workdir)
        print(table)
        _write(workdir, RESULTS_FILE, table + "\n")
        return
    if not _CONFIG.value:
        raise errors.UserError("give --config, the config file each point trains.")
    if _INIT_FROM.value and not _STAGE.value:
        raise errors.UserError("--init_from needs --stage (the stage it initialises).")
    points = grid_points(
        _parse_ints("num_filters", _NUM_FILTERS.value),
        _parse_ints("num_res_blocks", _NUM_RES_BLOCKS.value),
        [_parse_size(s) for s in _INPUT_SIZES.value],
    )
    init_from = _absolute(_INIT_FROM.value) if _INIT_FROM.value else ""
    import jax  # The checks below need no accelerator; the runs get this host's.

    jax.config.update("jax_platforms", "cpu")
    validate_points(_CONFIG.value, workdir, points, _STAGE.value, extra)
    commands = [
        point_command(_CONFIG.value, workdir, p, _STAGE.value, init_from, extra) for p in points
    ]
    if _DRY_RUN.value:
        for cmd in commands:
            print(shlex.join(cmd))
        return
    sweep = {"config": _CONFIG.value, "stage": _STAGE.value, "points": points}
    _write(workdir, SWEEP_FILE, json.dumps(sweep, indent=2))
    failed = run(points, commands, workdir, _STAGE.value)
    table = collect(workdir)
    print("\n" + table)
    _write(workdir, RESULTS_FILE, table + "\n")
    if failed:
        raise errors.UserError(
            f"{len(failed)} of {len(points)} points failed: {', '.join(failed)}."
        )


def parse_flags(argv) -> list[str]:
    """absl's flag parse; a bad flag is one `error:` line (exit status 1), no usage text."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = f"{errors.brief(e)}; see --helpfull for the flags and their values."
        errors.exit_with(errors.UserError(message), errors.EXIT_USER_ERROR)
        raise  # not reached


def _absolute(path: str) -> str:
    """Runs may start elsewhere and Orbax wants absolute paths; gs://... already are."""
    return path if "://" in path else os.path.abspath(path)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
