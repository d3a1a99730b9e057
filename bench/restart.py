r"""What a restart costs: the trainer CLI cold, killed after its first step, started again.

    python bench/restart.py                          # both cases
    python bench/restart.py --cases=resnet18_fmnist  # one

Each case runs `python -m learned_resize.main` in a fresh process on a fresh workdir
(so an empty compilation cache, the default `<workdir>/compile_cache`), reads its log
lines as they come, and kills it with SIGKILL once the second step's line
(`step 2/...`, `--config.log_every_steps=1`) has appeared. Then the same command again
in a new process: JAX's persistent compilation cache now holds the programs. Per run it
prints the seconds from the "Compiling the train step" line to the first step's line
(trace + compile or cache load + the first step + its batch) and from the process start
to the first step's line (imports, data, init and all), and the ratio restart / cold.
The middle column takes one step off the first (the second step's time, from its log
line): the part of the interval a restart could save at all.

Cases:
  resnet18_fmnist   ResNet-18 on Fashion-MNIST (prepared from Debian's
                    `dataset-fashion-mnist`) at 32x32, batch 16, configs/tiny.py's
                    other settings;
  resnet50_learned  configs/imagenet.py's `learned` stage for ResNet-50 (learned resizer
                    + ResNet-50, float32) on `imagenet2012` mocked with TFDS's
                    `tfds.testing.mock_data` (random JPEGs) in the CLI's process,
                    at `--learned_input` -> `--learned_output` (default 224 -> 112,
                    quarter the paper's pixels, to keep a cold compile under a few
                    minutes on a 2-core CPU), batch 8.

`--compile_cache=''` runs the same with the cache off (both runs then compile).
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

from absl import app, flags

from learned_resize.runtime import allocator as allocator_lib

_CASES = flags.DEFINE_list(
    "cases", ["resnet18_fmnist", "resnet50_learned"], "resnet18_fmnist, resnet50_learned."
)
_LEARNED_INPUT = flags.DEFINE_integer("learned_input", 224, "resnet50_learned: input size.")
_LEARNED_OUTPUT = flags.DEFINE_integer("learned_output", 112, "resnet50_learned: resizer output.")
_CACHE = flags.DEFINE_string(
    "compile_cache", None, "Passed to the CLI when given ('' = off); default: the CLI's."
)
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds a run may take to its first step.")

# Runs the CLI (`learned_resize.main.run`, flag parsing included) inside TFDS's mock of
# imagenet2012: random JPEGs of assorted shapes, labels < 1000.
_MOCK_IMAGENET = """
import io, sys
import numpy as np, PIL.Image, tensorflow_datasets as tfds
rng = np.random.default_rng(0)
def jpeg(h, w):
    buffer = io.BytesIO()
    PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()
def record(i):
    return {"image": jpeg(200 + 3 * (i % 20), 240 - 2 * (i % 20)), "label": i * 7 % 1000}
records = {"train": [record(i) for i in range(64)], "validation": [record(i) for i in range(16)]}
def as_data_source(self, split, decoders=None, **kwargs):
    return records[split]
with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    from learned_resize import main
    sys.argv = ["learned_resize.main", *sys.argv[1:]]
    main.run()
"""


def command(case: str, workdir: str) -> list[str]:
    common = [
        f"--workdir={workdir}",
        "--config.log_every_steps=1",
        "--config.checkpoint_every_steps=1000",
        "--config.num_train_steps=50",
    ]
    if _CACHE.value is not None:
        common.append(f"--compile_cache={_CACHE.value}")
    if case == "resnet18_fmnist":
        return [
            sys.executable, "-m", "learned_resize.main", "--config=configs/tiny.py",
            "--config.model.name=resnet18", "--config.input_size=(32,32)",
            "--config.resizer.output_size=(32,32)", *common,
        ]  # fmt: skip
    if case == "resnet50_learned":
        size, out = _LEARNED_INPUT.value, _LEARNED_OUTPUT.value
        return [
            sys.executable, "-c", _MOCK_IMAGENET, "--config=configs/imagenet_resnet50.py",
            "--stages=learned", "--config.stages.learned.init_from_stage=",
            f"--config.stages.learned.input_size=({size},{size})",
            f"--config.resizer.output_size=({out},{out})",
            "--config.model.dtype=float32", "--config.batch_size=8",
            "--config.optim.warmup_epochs=0", "--config.data.num_workers=0",
            "--config.num_eval_images=8", *common,
        ]  # fmt: skip
    raise ValueError(f"unknown case {case!r}; use resnet18_fmnist or resnet50_learned.")


def run_to_first_step(argv: list[str]) -> dict:
    """Starts argv, times its log lines, SIGKILLs it after the first step's line."""
    env = dict(allocator_lib.environment("tcmalloc"), PYTHONUNBUFFERED="1")
    env.pop("JAX_COMPILATION_CACHE_DIR", None)  # the CLI's own default cache
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )  # fmt: skip
    compiling = first = second = None
    tail = []
    try:
        for line in proc.stdout:
            now = time.perf_counter() - start
            tail = (tail + [line])[-20:]
            if compiling is None and "Compiling the train step" in line:
                compiling = now
            if "] step " in line and "/" in line.split("] step ", 1)[1]:
                if first is not None:
                    second = now
                    break
                first = now
            if now > _TIMEOUT.value:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    if second is None or compiling is None:
        raise RuntimeError("no second step; the run's last lines:\n" + "".join(tail))
    return {
        "compile_to_step": first - compiling,
        "start_to_step": first,
        "beyond_a_step": first - compiling - (second - first),
    }


_KEYS = ("compile_to_step", "beyond_a_step", "start_to_step")


def main(argv):
    del argv
    print(f"load average {os.getloadavg()[0]:.2f} at the start")
    print(
        "| case | run | compile line -> first step s | the same less one step s "
        "| process start -> first step s |"
    )
    print("|---|---|---:|---:|---:|")
    for case in _CASES.value:
        with tempfile.TemporaryDirectory(prefix="restart_bench_") as root:
            argv = command(case, os.path.join(root, "workdir"))
            runs = {}
            for run in ("cold", "after kill -9"):
                runs[run] = run_to_first_step(argv)
                cells = " | ".join(f"{runs[run][k]:.1f}" for k in _KEYS)
                print(f"| {case} | {run} | {cells} |", flush=True)
            cold, again = runs["cold"], runs["after kill -9"]
            ratios = " | ".join(f"x{again[k] / cold[k]:.2f}" for k in _KEYS)
            print(f"| {case} | restart / cold | {ratios} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    app.run(main)
