"""Every user mistake is one line, `error: <what and how to fix it>`, exit status 1, no
traceback, found before anything is compiled or written.

The cases run through the CLI's own entry point, one process each
(tests/helpers/cli_driver.py forks them from one interpreter so that 50 cases take
seconds, not minutes); a few also run as a plain `python -m learned_resize.main` to show
the two agree.
"""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# (extra argv, a fragment the one line must contain). {tmp}: a scratch dir; the base
# argv is the tiny config on the test dataset with workdir {tmp}/run.
CASES = [
    (["--config=configs/nope.py"], "config file configs/nope.py does not exist"),
    (["--config=README.md"], "could not be loaded"),
    (["--config=learned_resize/__init__.py"], "has no get_config()"),
    (["--config=configs/tiny.py:nosuchvariant"], "nosuchvariant"),
    (["--config.optim.lr=1"], "did you mean config.optim.learning_rate?"),
    (["--config.batch_sz=16"], "did you mean config.batch_size?"),
    (["--config.resizer.num_filter=8"], "did you mean config.resizer.num_filters?"),
    (["--config.dta.name=x"], "unknown config key config.dta.name"),
    (["--config.batch_size=abc"], "--config.batch_size=abc"),
    (["--config.batch_size=1.5"], "--config.batch_size=1.5"),
    (["--config.optim=3"], "--config.optim=3"),
    (["--mode=train2"], "--mode"),
    (["--nosuchflag=1"], "nosuchflag"),
    (["extra_positional"], "unexpected arguments extra_positional"),
    (["NOCONFIG"], "give a config"),
    (["NOWORKDIR", "--config.batch_size=0"], "config.batch_size must be an integer >= 1"),
    (["--workdir={tmp}/afile"], "is a file"),
    (["--config.batch_size=0"], "config.batch_size must be an integer >= 1"),
    (["--config.batch_size=12"], "not divisible by the 8 devices"),
    (["--config.seed=-1"], "config.seed must be an integer >= 0"),
    (["--config.log_every_steps=0"], "config.log_every_steps must be an integer >= 1"),
    (["--config.checkpoint_every_steps=0"], "config.checkpoint_every_steps must be"),
    (["--config.keep_checkpoints=0"], "config.keep_checkpoints must be an integer >= 1"),
    (["--config.optim.learning_rate=nan"], "config.optim.learning_rate must be a finite"),
    (["--config.optim.learning_rate=0"], "config.optim.learning_rate must be a finite"),
    (["--config.optim.learning_rate=-1"], "config.optim.learning_rate must be a finite"),
    (["--config.optim.learning_rate=1e999"], "config.optim.learning_rate must be a finite"),
    (["--config.optim.schedule=linear"], "config.optim.schedule must be one of"),
    (["--config.resizer.kind=bilateral"], "config.resizer.kind must be one of"),
    (["--config.resizer.output_size=(0,8)"], "config.resizer.output_size must be positive"),
    (["--config.resizer.output_size=(2,2)"], "smaller than small_cnn's minimum input"),
    (["--config.input_size=(28,)"], "config.input_size must be a pair"),
    (["--config.model.name=resnet51"], "config.model.name must be one of"),
    (["--config.model.dtype=float16"], "config.model.dtype must be one of"),
    (["--config.task=segmentation"], "config.task must be one of"),
    (["--config.data.channels=2"], "config.data.channels must be one of"),
    (["--config.data.mean=(0.1,0.2,0.3)"], "config.data.mean has 3 values"),
    (["--config.init_from.parts=('head',)"], "config.init_from.parts may only name"),
    (["--config.num_train_steps=0", "--config.num_epochs=0"], "set config.num_epochs"),
    (["--config.profile_steps=(5,2)"], "config.profile_steps must be (start, stop)"),
    (["--config.eval_every_steps=-1"], "config.eval_every_steps must be an integer >= 0"),
    (["--config.num_eval_images=-1"], "config.num_eval_images must be an integer >= 0"),
    (["--config.data.num_classes=7"], "set --config.data.num_classes=10"),
    (["--config.data.data_dir={tmp}/typo_dir"], "does not exist; fix the path"),
    (["--config.data.name=no_such_dataset"], "no_such_dataset"),
    (["--config.data.crop=zoom"], "config.data.crop"),
    (["--config=configs/tiny.py:staged", "--stages=nosuchstage"], "unknown --stages"),
    (["--mode=eval", "--checkpoint={tmp}/nothing_here"], "no checkpoint at"),
    (["--mode=eval", "--checkpoint={tmp}/emptydir"], "no finished checkpoint under"),
    (
        ["--config=configs/tiny.py:staged", "--mode=eval", "--checkpoint={tmp}/emptydir"],
        "--stages=NAME",
    ),
    # The optimizer.
    (["--config.optim.momentum=1.0"], "config.optim.momentum must be a finite number in [0, 1)"),
    (["--config.optim.momentum=-0.1"], "config.optim.momentum must be a finite number in [0, 1)"),
    (["--config.optim.momentum=nan"], "config.optim.momentum must be a finite number in [0, 1)"),
    (["--config.optim.label_smoothing=1.0"], "config.optim.label_smoothing must be a finite"),
    (["--config.optim.label_smoothing=-0.1"], "config.optim.label_smoothing must be a finite"),
    (["--config.optim.weight_decay=-0.0001"], "config.optim.weight_decay must be a finite"),
    (["--config.optim.weight_decay=inf"], "config.optim.weight_decay must be a finite"),
    (["--config.optim.grad_clip_norm=-1"], "config.optim.grad_clip_norm must be a finite"),
    (["--config.optim.grad_clip_norm=nan"], "config.optim.grad_clip_norm must be a finite"),
    (["--config.optim.warmup_epochs=-1"], "config.optim.warmup_epochs must be a finite"),
    (["--config.optim.decay_rate=0"], "config.optim.decay_rate must be a finite number in (0, 1]"),
    (["--config.optim.decay_rate=1.5"], "config.optim.decay_rate must be a finite number in"),
    (["--config.optim.decay_epochs=0"], "config.optim.decay_epochs must be a finite number"),
    (["--config.optim.reference_batch_size=0"], "config.optim.reference_batch_size must be"),
    # The data and its normalisation.
    (["--config.data.std=(0.0,)"], "config.data.std=(0.0,) has the value 0.0"),
    (["--config.data.std=(-0.353,)"], "config.data.std=(-0.353,) has the value -0.353"),
    (["--config.data.std=(1e999,)"], "config.data.std=(inf,) has the value inf"),
    (["--config.data.mean=(1e999,)"], "config.data.mean=(inf,) has the value inf"),
    (["--config.data.std=(0.2,0.3,0.4)"], "config.data.std has 3 values"),
    (["--config.data.min_area=0"], "config.data.min_area"),
    (["--config.data.eval_crop_fraction=1.5"], "config.data.eval_crop_fraction"),
    (["--config.data.num_workers=-2"], "config.data.num_workers"),
    (["--config.data.prefetch=-1"], "config.data.prefetch"),
    (["--config.data.num_classes=0"], "config.data.num_classes must be an integer >= 1"),
    (["--config.data.name="], "config.data.name is empty"),
    (["--config.data.aspect=stretch"], "config.data.aspect must be one of"),
    (["--config.data.manual_dir={tmp}/no_source"], "config.data.manual_dir="),
    (["--config.data.train_split=nosuch"], "config.data.train_split='nosuch' is not a split"),
    (["--config.data.eval_split=nosuch"], "config.data.eval_split='nosuch' is not a split"),
    # The batch against the dataset.
    (["--config.batch_size=2000000"], "config.batch_size=2000000 is more than the 96 training"),
    (["--config.batch_size=104"], "config.batch_size=104 is more than the 96 training images"),
    (["--config.batch_size=-8"], "config.batch_size must be an integer >= 1"),
    (["--config.data.train_split=train[:8]"], "config.batch_size=16 is more than the 8 training"),
    (["--config.num_eval_images=32"], "config.num_eval_images=32 is more than one eval batch"),
    # Where the model starts from.
    (["--config.init_from.path={tmp}/x"], "config.init_from.path={tmp}/x does not exist"),
    (["--config.init_from.path={tmp}/emptydir"], "holds no finished checkpoint"),
    (["--config.init_from.resizer_path={tmp}/nothing_here"], "config.init_from.resizer_path="),
    (
        ["--config.init_from.path={tmp}/fake_bilinear", "--config.init_from.parts=()"],
        "config.init_from.parts is empty",
    ),
    (
        ["--config.init_from.resizer_path={tmp}/fake_bilinear", "--config.resizer.kind=bilinear"],
        "config.init_from.resizer_path loads a learned resizer but config.resizer.kind",
    ),
    (
        ["--config.init_from.path={tmp}/fake_bilinear", "--config.init_from.parts=('score_head',)"],
        "has no score head",
    ),
    (
        ["--config.init_from.path={tmp}/fake_bilinear", "--config.init_from.parts=('resizer',)"],
        "has no learned resizer (resizer='bilinear')",
    ),
    (["--config.init_from.resizer_path={tmp}/fake_bilinear"], "has no learned resizer"),
    (["--config.init_from.path={tmp}/fake_resnet"], "is of a different model: backbone"),
    (["--config.init_from.path={tmp}/fake_no_meta"], "has no readable meta/metadata"),
    (["--config=configs/tiny.py:staged", "--stages=learned"], "baseline does not exist"),
    # The schedule's length.
    (["--config.num_epochs=-1"], "config.num_epochs must be a finite number in [0, inf)"),
    (["--config.num_epochs=nan"], "config.num_epochs must be a finite number in [0, inf)"),
    (["--config.num_train_steps=-5"], "config.num_train_steps must be an integer >= -1"),
    (["--config.profile_steps=(-1,2)"], "config.profile_steps must be (start, stop)"),
    (["--config.profile_steps=(1,2,3)"], "config.profile_steps must be a pair of integers"),
    # Sizes and the resizer.
    (["--config.input_size=(0,28)"], "config.input_size must be positive"),
    (["--config.input_size=(28,28,3)"], "config.input_size must be a pair"),
    (["--config.resizer.output_size=(8,)"], "config.resizer.output_size must be a pair"),
    (["--config.resizer.num_filters=0"], "config.resizer.num_filters must be an integer >= 1"),
    (["--config.resizer.num_res_blocks=-1"], "config.resizer.num_res_blocks must be an integer"),
    (["--config.resizer.interpolation=cubic"], "config.resizer.interpolation must be one of"),
    (["--config.resizer.norm=layer"], "config.resizer.norm must be one of"),
    (["--config.model.head_dropout=1.0"], "config.model.head_dropout must be a finite number"),
    # Stages.
    (
        ["--config=configs/tiny.py:staged", "--config.stages.learned.init_from_stage=nosuch"],
        "stage 'learned' starts from 'nosuch', which is not a stage",
    ),
    (
        ["--config=configs/tiny.py:staged", "--config.stages.learned.init_from_stage=learned"],
        "start from each other in a cycle",
    ),
    (
        ["--config=configs/tiny.py:staged", "--config.stages.learned.optim.learning_rate=-1"],
        "config.optim.learning_rate must be a finite number > 0, got -1",
    ),
    (
        ["--config=configs/tiny.py:staged", "--config.stages.learned.resizer.kind=bilateral"],
        "config.resizer.kind must be one of",
    ),
    (["-config.batch_sz=16"], "did you mean config.batch_size?"),
    (["--config.workdir={tmp}/w"], "config.workdir; did you mean the flag --workdir?"),
]
FIRST_NEW_CASE = 50  # CASES[:50] predate the checks of every config value


def _argv(small_fmnist, tmp, index, extra):
    """The tiny config on the test dataset with workdir {tmp}/run{index}, plus `extra`."""
    source, data_dir, _ = small_fmnist
    extra = [e.format(tmp=tmp) for e in extra]
    argv = []
    own_config = [e for e in extra if e.startswith("--config=")]
    if "NOCONFIG" not in extra and not own_config:
        argv.append("--config=configs/tiny.py")  # --config=... before its --config.KEY=...
    if "NOWORKDIR" not in extra:
        argv.append(f"--workdir={tmp}/run{index}")
    argv += [e for e in extra if e not in ("NOCONFIG", "NOWORKDIR")]
    if "NOCONFIG" not in extra and all("configs/tiny.py" in e for e in own_config):
        if not any(e.startswith("--config.data.manual_dir=") for e in extra):
            argv.append(f"--config.data.manual_dir={source}")
        if not any(e.startswith("--config.data.data_dir=") for e in extra):
            argv.append(f"--config.data.data_dir={data_dir}")
    return argv


# The meta item of a configs/tiny.py checkpoint with a bilinear resizer (model_meta).
TINY_META = {
    "task": "classification",
    "model": "small_cnn",
    "num_classes": 10,
    "channels": 1,
    "resizer": "bilinear",
    "resizer_filters": 4,
    "resizer_blocks": 1,
    "resizer_norm": "batch",
}


def _fake_checkpoint(workdir, meta):
    """A workdir whose checkpoints/6 has only a meta item (all that preflight reads)."""
    step = workdir / "checkpoints" / "6"
    (step / "state").mkdir(parents=True)
    (step / "meta").mkdir()
    if meta is not None:
        (step / "meta" / "metadata").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def results(small_fmnist, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "afile").write_text("a file, not a directory")
    (tmp / "emptydir").mkdir()
    _fake_checkpoint(tmp / "fake_bilinear", TINY_META)
    _fake_checkpoint(tmp / "fake_resnet", {**TINY_META, "model": "resnet50"})
    _fake_checkpoint(tmp / "fake_no_meta", None)
    argvs = [_argv(small_fmnist, tmp, i, extra) for i, (extra, _) in enumerate(CASES)]
    cases = tmp / "cases.json"
    cases.write_text(json.dumps(argvs))
    # Every XLA compile logs 'Finished XLA compilation': no case may compile anything.
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1")
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    out = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "helpers", "cli_driver.py"), str(cases)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return tmp, argvs, json.loads(out.stdout)


def test_there_are_at_least_forty_cases():
    assert len(CASES) >= 40
    assert len(CASES) - FIRST_NEW_CASE >= 40


@pytest.mark.parametrize("index", range(len(CASES)), ids=[" ".join(c[0]) for c in CASES])
def test_bad_input_is_one_error_line(results, index):
    tmp, argvs, outputs = results
    fragment = CASES[index][1].format(tmp=tmp)
    result = outputs[index]
    lines = result["stderr"].strip().splitlines()
    assert result["status"] == 1, (argvs[index], result)
    assert len(lines) == 1, (argvs[index], result["stderr"][-3000:])
    assert lines[0].startswith("error: ") and "Traceback" not in result["stderr"]
    assert fragment in lines[0], (fragment, lines[0])
    assert "Compiling the train step" not in result["stdout"]
    if "--mode=eval" not in argvs[index]:  # (eval mode builds its model before the checkpoint)
        assert "Finished XLA compilation" not in result["stdout"] + result["stderr"]
    workdir = tmp / f"run{index}"
    assert not workdir.exists() or not any(workdir.iterdir()), sorted(workdir.rglob("*"))


def _plain(argv, **env):
    """`python -m learned_resize.main ARGV` as a user types it."""
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", **env)
    full_env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    cmd = [sys.executable, "-m", "learned_resize.main", *argv]
    return subprocess.run(cmd, cwd=REPO, env=full_env, capture_output=True, text=True, timeout=300)


def _case(*extra) -> int:
    return [c[0] for c in CASES].index(list(extra))


@pytest.mark.parametrize(
    "index",
    [4, 22, 42, _case("--config.batch_size=2000000"), _case("--config.init_from.path={tmp}/x")],
)
def test_the_plain_command_says_the_same(results, index):
    _, argvs, outputs = results
    plain = _plain(argvs[index])
    assert plain.returncode == 1
    assert plain.stderr == outputs[index]["stderr"]


def test_traceback_on_request(results):
    _, argvs, _ = results
    plain = _plain(argvs[17], LEARNED_RESIZE_TRACEBACK="1")
    assert plain.returncode == 1
    assert "Traceback" in plain.stderr and plain.stderr.strip().endswith(
        "error: config.batch_size must be an integer >= 1, got 0."
    )
