"""The reduction settings, declared in the data layer (golive_data/parameters.py): its
literals agree with the core's constants, it stays light for the API, and `validate`
gives one clear message per problem."""
import json
import os
import subprocess
import sys

import pytest

from golive_data import parameters
from golive_data.parameters import DEFAULT_SETTINGS, ReductionSettings, validate
from tests.conftest import ROOT


def test_the_literals_are_the_cores_constants():
    from functions.core import cosmics, extract, flats
    from functions.core import parameters as core_parameters

    assert parameters.EXTRACTION_TYPES == extract.METHODS
    assert parameters.TARGET_MODELS == extract.MODELS
    assert parameters.FLAT_METHODS == flats.METHODS
    assert set(parameters.COSMIC_METHODS) == set(cosmics.METHODS)
    for name in ("TARGET_MIN_SNR", "TARGET_MIN_FWHM_ARCSEC", "SLIT_EDGE_MARGIN_ARCSEC", "TARGET_COLUMN_BLOCKS",
                 "TARGET_MIN_BLOCK_FRACTION"):
        assert getattr(parameters, name) == getattr(extract, name), name
    # the core's callers see the same declaration
    assert core_parameters.ReductionSettings is ReductionSettings
    assert core_parameters.DEFAULT_SETTINGS is DEFAULT_SETTINGS


def test_the_declaration_imports_neither_numpy_nor_the_core():
    probe = ("import sys, json\n"
             f"sys.path.insert(0, {str(ROOT)!r})\n"
             "import golive_data.parameters, golive_data.versions\n"
             "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('numpy', 'astropy', 'scipy', 'functions'))))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-I", "-c", probe], cwd=str(ROOT), env=env, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_valid_settings_have_no_problem():
    assert validate({}) == []
    assert validate({"extraction_type": "optimal", "max_targets": 1, "cosmic_niter": None, "target_min_snr": 5,
                     "ignore_bias": True}) == []
    assert validate(DEFAULT_SETTINGS.to_dict()) == []


@pytest.mark.parametrize("settings, expected", [
    ({"max_target": 2}, "unknown setting 'max_target': did you mean max_targets?"),
    ({"colour": 1}, "unknown setting 'colour': known are background_threshold, "),
    ({"extraction_type": "horne"}, "extraction_type must be one of fractional, optimal; got 'horne'"),
    ({"extraction_type": 1}, "extraction_type must be a string (one of fractional, optimal), got 1"),
    ({"max_targets": 50}, "max_targets must be within 1..20, got 50"),
    ({"max_targets": 2.5}, "max_targets must be an integer within 1..20, got 2.5"),
    ({"max_targets": True}, "max_targets must be an integer within 1..20, got True"),
    ({"max_targets": None}, "max_targets must not be null"),
    ({"target_min_snr": "3"}, "target_min_snr must be a finite number within 0..1000, got '3'"),
    ({"target_min_snr": float("nan")}, "target_min_snr must be a finite number within 0..1000, got nan"),
    ({"ignore_bias": "yes"}, "ignore_bias must be true or false, got 'yes'"),
])
def test_each_problem_has_its_message(settings, expected):
    (problem,) = validate(settings)
    assert problem.startswith(expected), problem
    with pytest.raises(ValueError) as raised:
        ReductionSettings.from_dict(settings)
    assert str(raised.value) == problem


def test_every_bad_name_and_value_gets_its_own_message():
    problems = validate({"max_targets": 0, "extraction_type": "horne", "nope": 1, "flat_normalization_order": "5",
                         "cosmic_niter": None, "saturation_threshold": 150})
    assert len(problems) == 5, problems
    for start in ("max_targets ", "extraction_type ", "unknown setting 'nope'", "flat_normalization_order ",
                  "saturation_threshold "):
        assert sum(p.startswith(start) for p in problems) == 1, (start, problems)
    with pytest.raises(ValueError) as raised:
        ReductionSettings.from_dict({"max_targets": 0, "nope": 1})
    assert "max_targets must be within 1..20" in str(raised.value) and "'nope'" in str(raised.value)


def test_a_settings_object_must_be_an_object():
    assert validate(["max_targets", 1]) == ["settings must be a JSON object, got list"]
    with pytest.raises(ValueError, match="JSON object"):
        ReductionSettings.from_dict("max_targets=1")
