"""The config's choice lists agree with the modules that implement each choice, and the
config package stays free of models/ and data/ imports."""

import os
import subprocess
import sys

from learned_resize import models
from learned_resize.config import defaults
from learned_resize.data import aspect_ratio, sources
from learned_resize.models import resampling, resizers
from learned_resize.runtime import precision

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fixed_methods_match_resampling():
    assert tuple(defaults.FIXED_METHODS) == tuple(resampling.FIXED_METHODS)


def test_norms_match_resizers():
    assert tuple(defaults.NORMS) == tuple(resizers.NORMS)


def test_aspect_modes_match_aspect_ratio():
    assert tuple(defaults.ASPECT_MODES) == tuple(aspect_ratio.MODES)


def test_crops_match_sources():
    assert tuple(defaults.CROPS) == tuple(sources.CROPS)


def test_dtypes_match_precision():
    assert tuple(defaults.DTYPES) == tuple(precision.DTYPES)


def test_min_input_sizes_cover_exactly_the_registered_classifiers():
    assert sorted(defaults.MIN_INPUT_SIZE) == models.available_classifiers()


def test_base_config_defaults_are_in_the_vocabulary():
    config = defaults.base_config()
    assert config.task in defaults.TASKS
    assert config.optim.schedule in defaults.SCHEDULES
    assert config.model.dtype in defaults.DTYPES
    assert config.model.name in defaults.MIN_INPUT_SIZE
    assert config.resizer.kind in ("learned", *defaults.FIXED_METHODS)
    assert config.resizer.interpolation in defaults.FIXED_METHODS
    assert config.resizer.norm in defaults.NORMS
    assert config.data.aspect in defaults.ASPECT_MODES
    assert config.data.crop in defaults.CROPS
    assert set(config.init_from.parts) <= set(defaults.INIT_PARTS)


def test_config_package_imports_no_models_or_data():
    code = (
        "import learned_resize.config.validation, learned_resize.config.stages, sys; "
        "print([m for m in sys.modules "
        "if m.startswith(('learned_resize.models', 'learned_resize.data'))])"
    )
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
