"""A night as real nights are: calibrations of another binning, slit and window than the science.

On the local stack, through the real handlers: the simulator's night with the science at
2x2 through a 1.0" slit, its comparison lamps at 1x2 through 0.45" in the 200-row ZZ Ceti
window, its quartz flats through a 3.0" slit, and every frame 22 unbinned px away from
goodman-pipeline's reference lamp (as real lamps sit 20-25 px off). Every science target
must be calibrated, to truth, and say what differed.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from .test_reduction_stack import _settle, _upload

NIGHT = "2024-04-10"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    from infra.simulator import make_night, write_night

    out = tmp_path_factory.mktemp("mixed_night")
    write_night(out, make_night(seed=4, night=NIGHT, lamp_binning=(1, 2), slit=1.0, lamp_slit=0.45,
                                flat_slit=3.0, lamp_roi="Spectroscopic ZZ Ceti", lamp_offset=22.0))
    return out


@pytest.fixture(scope="module")
def reduced(system, s3, api, mixed):
    _upload(system, s3, NIGHT, sorted(mixed.glob("*.fits")))
    return _settle(system, api, NIGHT, timeout=240)


def test_every_science_target_is_calibrated_to_truth_and_says_what_differed(reduced, mixed):
    truth = {f["name"]: f for f in json.loads((mixed / "truth.json").read_text())["frames"]}
    science = [f for f in reduced.values() if f["obstype"] == "OBJECT"]
    assert len(science) == 3
    for f in science:
        assert f["spectra_status"] == "calibrated", (f["file_name"], f.get("spectra_reason"))
        notes = " | ".join(f["calibration_notes"])
        assert "binning 1x2 vs 2x2" in notes and "slit 0.45LS vs 1LS" in notes, notes
        assert "flat norm_master_flat_" in notes and "slit 3LS vs 1LS" in notes, notes
        assert f["calibrations"]["master_flat"] is not None and f["calibrations"]["master_bias"] is not None
        (s,) = f["spectra"]
        w = s["wavelength"]
        assert w["lamp"].endswith("HgArNe_400M2_GG455.fits") and w["rms_pixels"] < 0.1, w
        # the science solution (lamp's, mapped to 2x2, moved by the sky lines) against the
        # frame's own truth at every column: reduced column j is raw column first_lit + j
        t = truth[f["file_name"]]["wavelength_solution"]
        scale, offset = t["x_of_column"]
        j = np.arange(w["n_pixels"], dtype=float)
        true = np.polynomial.chebyshev.chebval(scale * (j + t["first_lit_col"]) + offset, t["coefficients"])
        ours = np.polynomial.chebyshev.chebval(j, w["coefficients"])
        err = (ours - true) / np.gradient(true)
        print(f"{f['file_name']}: rms {np.sqrt(np.mean(err ** 2)):.4f} px, max {np.max(np.abs(err)):.4f} px, "
              f"flexure {w['flexure']}")
        assert np.sqrt(np.mean(err ** 2)) < 0.05 and np.max(np.abs(err)) < 0.15


def test_the_lamps_at_their_own_binning_are_solved_on_arrival(reduced):
    lamps = [f for f in reduced.values() if f["obstype"] == "COMP"]
    assert len(lamps) == 2
    for lamp in lamps:
        assert lamp["binning"] == "1x2" and lamp["wavelength"] is not None, lamp.get("wavelength_error")
        assert abs(lamp["wavelength"]["shift"]) > 15  # registered 22 px away from the reference lamp


def test_the_calibrated_product_lists_what_differed(reduced, api):
    import io

    from astropy.io import fits

    f = next(f for f in reduced.values() if f["obstype"] == "OBJECT")
    item = api.json(f"/api/files/{f['file_id']}")
    url = next(p["url"] for p in item["products"] if p["kind"] == "calibrated")
    header = fits.getheader(io.BytesIO(api.http.get(url, timeout=30).content))
    cards = [str(header[k]) for k in header if k.startswith("GSP_CD")]
    assert any("binning 1x2 vs 2x2" in c for c in cards), cards
    assert header["GSP_LAMP"].endswith("HgArNe_400M2_GG455.fits")
