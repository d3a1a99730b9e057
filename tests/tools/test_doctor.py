"""`python -m learned_resize.tools.doctor`, run in this process (8 CPU devices, see conftest.py).

Each check is fed a known situation (a data dir with one dataset prepared, a missing
weights cache, fake GPU devices and package versions) and its line is compared with
the text written out here.
"""

import os
import types

import jax
import pytest
from absl import flags

from learned_resize.retarget import weights
from learned_resize.tools import doctor


def by_name(checks):
    return {c.name: c for c in checks}


def run_doctor(*args: str) -> int:
    """`python -m learned_resize.tools.doctor ARGS` in this process: its flags in a FlagValues of
    their own, parsed as absl parses the command line, then its main."""
    values = flags.FlagValues()
    flag = doctor.define_flags(values)
    return doctor.main(values(["doctor", *args]), flag)


@pytest.fixture
def data_dir(tmp_path):
    """A TFDS dir holding fashion_mnist_local 1.0.0 and ava_standin in a config subdir."""
    root = tmp_path / "tfds"
    for version in ("fashion_mnist_local/1.0.0", "ava_standin/default/2.0.0"):
        (root / version).mkdir(parents=True)
        (root / version / "dataset_info.json").write_text("{}")
    return str(root)


def test_report_on_this_machine(data_dir, tmp_path):
    cache = tmp_path / "no_weights"
    checks = by_name(doctor.run_checks(data_dir, str(cache)))
    assert checks["platform"].line() == "OK  platform: cpu (cpu)"
    assert checks["processes"].line() == (
        "OK  processes: process 0 of 1, 8 devices per process, 8 in all"
    )
    assert checks["memory"].detail.startswith("not reported on cpu; host RAM ")
    assert checks["versions"].detail.startswith(f"jax {jax.__version__}, jaxlib ")
    assert checks["data dir"].line() == f"OK  data dir: {data_dir} exists"
    assert checks["dataset fashion_mnist_local"].line() == (
        "OK  dataset fashion_mnist_local: prepared (fashion_mnist_local/1.0.0)"
    )
    assert checks["dataset ava_standin"].detail == "prepared (ava_standin/default/2.0.0)"
    assert checks["dataset ava"].line() == (
        "FIX dataset ava: not prepared -> python -m learned_resize.data.prepare "
        f"--dataset=ava --data_dir={data_dir} --manual_dir=DIR_WITH_AVA.txt_AND_images"
    )
    assert checks["dataset imagenet2012"].fix.startswith(
        f"tfds build imagenet2012 --file_format=array_record --data_dir={data_dir}"
    )
    assert checks["VGG weights"].line() == (
        f"FIX VGG weights: missing {cache}/vgg19_imagenet.npz, {cache}/vgg16_imagenet.npz "
        f"-> python -m learned_resize.retarget.weights --fetch --cache_dir={cache}"
    )


def test_weights_present_and_data_dir_missing(tmp_path):
    for depth in (16, 19):
        weights.cache_path(depth, tmp_path).write_bytes(b"")
    assert doctor.check_weights(str(tmp_path)).line() == (
        f"OK  VGG weights: {tmp_path} has vgg19_imagenet.npz, vgg16_imagenet.npz"
    )
    missing = str(tmp_path / "nowhere")
    checks = doctor.check_datasets(missing)
    assert checks[0].line() == f"OK  data dir: {missing} does not exist"
    assert not any(c.ok for c in checks[1:])


def test_unused_accelerator_gets_the_install_line():
    cpu = jax.local_devices()
    fix = doctor.check_platform(cpu, nvidia_driver=True, tpu_chips=0)
    assert fix.line() == (
        "FIX platform: cpu (cpu), but an NVIDIA driver is present -> " + doctor.CUDA_FIX
    )
    assert doctor.check_platform(cpu, False, 4).fix == f'pip install "jax[tpu]=={jax.__version__}"'
    gpu = types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3")
    assert doctor.check_platform([gpu, gpu], True, 0).line() == (
        "OK  platform: gpu (NVIDIA H100 80GB HBM3)"
    )


def test_uneven_processes():
    assert doctor.check_processes(1, 2, 8, 16).ok
    uneven = doctor.check_processes(1, 2, 8, 12)
    assert uneven.detail.endswith("processes see different numbers of devices")


def test_gpu_memory_per_device():
    def gpu(i, limit_gib, used_gib):
        stats = {"bytes_limit": limit_gib * 2**30, "bytes_in_use": used_gib * 2**30}
        return types.SimpleNamespace(id=i, platform="gpu", memory_stats=lambda: stats)

    check = doctor.check_memory([gpu(0, 60, 1.5), gpu(1, 60, 0)])
    assert (
        check.line() == "OK  memory: per device 0: 60.0 GiB (1.5 in use), 1: 60.0 GiB (0.0 in use)"
    )


def test_cuda_plugin_must_match_jaxlib(monkeypatch):
    versions = {"jax": "0.10.2", "jaxlib": "0.10.2", "jax-cuda12-plugin": "0.9.0"}
    monkeypatch.setattr(doctor, "_version", versions.get)
    check = doctor.check_versions("cuda 12080")
    assert check.line() == (
        "FIX versions: jax 0.10.2, jaxlib 0.10.2, jax-cuda12-plugin 0.9.0; runtime cuda 12080: "
        'jax-cuda12-plugin differs from jaxlib -> pip install "jax[cuda12]==0.10.2"'
    )
    versions["jax-cuda12-plugin"] = "0.10.2"
    assert doctor.check_versions("cuda 12080").ok


def test_main_prints_every_line_and_a_summary(data_dir, tmp_path, capsys, monkeypatch):
    for key in [k for k in os.environ if k.startswith(("SLURM_", "OMPI_"))]:
        monkeypatch.delenv(key)
    assert run_doctor(f"--data_dir={data_dir}", f"--cache_dir={tmp_path}") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "OK  platform: cpu (cpu)"
    fixes = sum(line.startswith("FIX") for line in lines)
    assert fixes == 3  # ava, imagenet2012, the weights
    assert lines[-1] == f"{len(lines) - 1 - fixes} of {len(lines) - 1} OK, {fixes} to fix."
    assert run_doctor("--distributed=on") == 1
    assert capsys.readouterr().err.startswith("error: --distributed=on but no launcher found")
