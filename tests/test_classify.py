"""Classification of real Goodman headers: the committed ones against a checked table,
and every raw file of ../shared/data/real when it is there."""
import json
from pathlib import Path

import pytest
from astropy.io import fits

from functions.core.classify import classify, find_mode, normalise_grating, normalise_slit
from tests.conftest import FIXTURES, SHARED_REAL

HEADERS = FIXTURES / "real_headers"
EXPECTED = json.loads((HEADERS / "expected.json").read_text())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_committed_real_headers(name):
    header = fits.Header.fromstring((HEADERS / name).read_bytes().decode("ascii"))
    got = classify(header)
    assert {k: got[k] for k in EXPECTED[name]} == EXPECTED[name]


def test_the_same_setup_spelled_differently_gets_one_key():
    # 'SYZY_400' + '400 m1' and 'SYZY_400' + '400WD' at the M1 angles are one setup.
    comp = classify({"OBSTYPE": "COMP", "INSTCONF": "Blue", "GRATING": "SYZY_400", "WAVMODE": "400 m1",
                     "CAM_ANG": 11.59981, "GRT_ANG": 5.8002, "FILTER2": "<NO FILTER>", "SLIT": '1.0" long slit',
                     "CCDSUM": "2 2", "ROI": "Spectroscopic 2x2", "INSTRUME": "Goodman Spectro"})
    sci = classify({"OBSTYPE": "OBJECT", "INSTCONF": "Blue", "GRATING": "400_SYZY", "WAVMODE": "400WD",
                    "CAM_ANG": 11.678175, "GRT_ANG": 5.8501, "FILTER2": "<NO FILTER>", "SLIT": "1.0_LONG_SLIT",
                    "CCDSUM": "2 2", "ROI": "Spectroscopic 2x2", "INSTRUME": "Goodman Spectro"})
    assert comp["configuration"] == sci["configuration"] == "BLUE_400_M1_NO_FILTER_1LS_2x2_SPECTROSCOPIC-2X2"


def test_custom_angles_are_kept_in_the_key():
    assert find_mode("930", 24.000169, 12.9998) is None
    got = classify({"OBSTYPE": "FLAT", "INSTCONF": "Red", "GRATING": "SYZY_930", "CAM_ANG": 24.0, "GRT_ANG": 13.0,
                    "CCDSUM": "2 2", "INSTRUME": "Goodman Spectro"})
    assert got["mode"] == "G13.0-C24.0"


def test_missing_obstype_is_inferred_and_says_so():
    got = classify({"OBJECT": "quartz flat", "LAMP_QUA": "TRUE", "EXPTIME": 10, "INSTCONF": "Red",
                    "GRATING": "SYZY_400", "INSTRUME": "Goodman Spectro", "CCDSUM": "1 1"})
    assert got["obstype"] == "FLAT"
    assert any("OBSTYPE missing" in n for n in got["notes"])


def test_unknown_values_are_noted_not_guessed():
    got = classify({"OBSTYPE": "WEIRD", "INSTRUME": "Other"})
    assert got["obstype"] == "UNKNOWN" and got["camera"] == "UNKNOWN"
    assert len(got["notes"]) >= 3


@pytest.mark.parametrize("raw, norm", [("SYZY_400", "400"), ("400_SYZY", "400"), ("SYZY_600-OLD", "600-OLD"),
                                       ("<NO GRATING>", None)])
def test_grating_spellings(raw, norm):
    assert normalise_grating(raw) == norm


@pytest.mark.parametrize("raw, norm", [('0.45" long slit', "0.45LS"), ("0.45_LONG_SLIT", "0.45LS"),
                                       ('1.0" long slit', "1LS"), ("<NO MASK>", "NO_MASK"), ("SLICER B.4", "SLICER-B.4")])
def test_slit_spellings(raw, norm):
    assert normalise_slit(raw) == norm


def _shared_files():
    return sorted(SHARED_REAL.glob("*/*.fits")) if SHARED_REAL.is_dir() else []


@pytest.mark.skipif(not _shared_files(), reason="../shared/data/real is not beside this clone (the committed "
                                                  "headers above cover the same setups)")
def test_every_real_frame_in_shared():
    by_kind = {}
    for path in _shared_files():
        got = classify(fits.getheader(path))
        assert got["obstype"] in ("BIAS", "FLAT", "COMP", "OBJECT"), (path.name, got)
        name = path.name
        if "_Zero_" in name:
            assert got["obstype"] == "BIAS"
        if "QuartzFlat" in name:
            assert got["obstype"] == "FLAT"
        if "_Fe_" in name:
            assert got["obstype"] == "COMP"
            by_kind.setdefault("fe_red" if "red" in name else "fe_blue", set()).add(got["configuration"])
        if "QuartzFlat" in name:
            by_kind.setdefault("flat", set()).add(got["configuration"])
        if "_Zero_" in name:
            by_kind.setdefault("bias", set()).add(got["configuration"])
    # Each group of the calibration afternoon is one setup, and the groups differ.
    assert all(len(keys) == 1 for keys in by_kind.values()), by_kind
    assert len({next(iter(k)) for k in by_kind.values()}) == len(by_kind)
