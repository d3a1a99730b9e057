r"""Entry point: train and evaluate, or evaluate a checkpoint.

    python -m learned_resize.main --config=configs/default.py --workdir=/tmp/lr
    python -m learned_resize.main --config=configs/default.py --workdir=/tmp/lr \
        --config.batch_size=64 --mode=eval --checkpoint=/tmp/lr/learned

On a Cloud TPU pod run the same command on every host (`launch/tpu_pod.sh`);
`jax.distributed.initialize()` finds the other hosts by itself there. Elsewhere pass
--coordinator_address/--num_processes/--process_id (see `launch/local_multiprocess.py`).
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, logs and results.")
_MODE = flags.DEFINE_enum(
    "mode", "train", ["train", "eval"], "Train (and evaluate) or only evaluate."
)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "For --mode=eval: a workdir or checkpoint directory (default: --workdir)."
)
_STAGES = flags.DEFINE_list("stages", None, "Run only these of config.stages (default: all).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (hosts).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")
_DISTRIBUTED = flags.DEFINE_enum(
    "distributed",
    "auto",
    ["auto", "on", "off"],
    "auto: initialise jax.distributed on TPU pods or when a coordinator is given.",
)


def _initialise_distributed() -> None:
    from learned_resize import distributed  # Flags, then SLURM / Open MPI / Cloud TPU, else off.

    try:
        distributed.initialise(
            _DISTRIBUTED.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value
        )
    except distributed.StartupError as e:
        sys.exit(f"error: {e}")


def _absolute(path: str) -> str:
    """Orbax needs absolute paths; remote ones (gs://...) already are."""
    return path if "://" in path else os.path.abspath(path)


def _results_table(rows: dict) -> str:
    """A markdown table of each stage's final eval metrics."""
    first = next(iter(rows.values()))
    if "plcc" in first:
        columns = [
            ("PLCC", "plcc"),
            ("SRCC", "srcc"),
            ("EMD", "emd"),
            ("binary acc", "binary_accuracy"),
        ]
    else:
        columns = [("top-1", "top1"), ("top-5", "top5"), ("eval loss", "loss")]
    head = "| stage | " + " | ".join(name for name, _ in columns) + " | train time (s) |"
    lines = [head, "|---" * (len(columns) + 2) + "|"]
    for stage, m in rows.items():
        values = " | ".join(f"{m[key]:.4f}" for _, key in columns)
        lines.append(f"| {stage} | {values} | {m.get('train_seconds', float('nan')):.0f} |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if _CONFIG.value is None:
        raise app.UsageError("Give a config: --config=configs/default.py")
    if not flags.FLAGS["verbosity"].present:  # Orbax logs every save at INFO; keep stdout readable.
        logging.set_verbosity(logging.WARNING)
    _initialise_distributed()
    # Imported after distributed initialisation: these query devices at import time.
    import jax

    from learned_resize import config_lib, metric_writers, train

    config = _CONFIG.value
    if _MODE.value == "eval":
        path = _CHECKPOINT.value or _WORKDIR.value
        if not path:
            raise app.UsageError("--mode=eval needs --checkpoint or --workdir.")
        path = _absolute(path)
        metrics = train.evaluate_checkpoint(config, path)
        metric_writers.log(json.dumps(metrics, indent=2))
        return
    if not _WORKDIR.value:
        raise app.UsageError("Give a --workdir for checkpoints and logs.")
    workdir = _absolute(_WORKDIR.value)
    stages = config_lib.stage_configs(config, workdir)
    if _STAGES.value:
        unknown = set(_STAGES.value) - {name for name, _, _ in stages}
        if unknown:
            raise app.UsageError(
                f"Unknown --stages {sorted(unknown)}; config.stages has "
                f"{[name for name, _, _ in stages]}."
            )
        stages = [s for s in stages if s[0] in _STAGES.value]
    for _, _, stage_config in stages:  # Every stage's values checked before anything runs.
        config_lib.validate_config(stage_config)
    results = {}
    for name, stage_workdir, stage_config in stages:
        metric_writers.log(f"=== stage {name} -> {stage_workdir}")
        results[name] = train.train_and_evaluate(stage_config, stage_workdir)
        if "preempted_at" in results[name]:
            sys.exit(0)
    table = _results_table(results)
    metric_writers.log("\n" + table)
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "results.md"), "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    # Before anything allocates: XLA:CPU's buffers under tcmalloc (see host_allocator.py).
    from learned_resize import host_allocator

    host_allocator.reexec_under_tcmalloc()
    app.run(main)
