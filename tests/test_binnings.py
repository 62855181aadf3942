"""Science at 1x1, 2x2 and 3x3 calibrated by a lamp read out otherwise, 30 px off the reference.

The core alone (no storage): the simulator renders a science frame and a comparison lamp
of the same setup at different binnings and windows, both are reduced with overscan and
trim, the targets are found, the lamp is summed under each target's aperture carried to
its own rows, solved, its solution mapped to the science columns and moved by the sky
lines. The result is compared with the science frame's truth at every column.
"""
from __future__ import annotations

import numpy as np
import pytest

from functions.core.masters import camera_binning
from functions.core.reduce import Calibrations, ReductionSettings, reduce_frame
from functions.core.spectra import calibrate_target, extract_targets, lamp_spectrum_for
from infra.simulator import make_night, render_frame
from infra.simulator.truth import truth_dict

SETTINGS = ReductionSettings(ignore_bias=True, ignore_flats=True, cosmic_ray_rejection="none")


def _reduce(plan, frame_plan):
    raw, header = render_frame(plan, frame_plan, cosmic_rays=False)
    cam, binning = camera_binning(header)
    frame, _ = reduce_frame(raw, header, frame_plan.obstype, cam, binning, Calibrations(), SETTINGS)
    return frame


CASES = [  # (mode, science binning, lamp binning, lamp window, lamp offset in unbinned px)
    ("400M2_GG455_HgArNe", (1, 1), (2, 2), None, -30.0),
    ("400M2_GG455_HgArNe", (3, 3), (1, 2), "Spectroscopic ZZ Ceti", 30.0),
    ("400M2_GG455_HgArNe", (2, 2), (3, 3), None, 12.0),
    # no sky line in the blue: the mapping alone must be right (the flexure cannot hide an error)
    ("1200M1_FeHeAr", (3, 3), (1, 1), None, -23.0),
    ("930M2_CuHeAr", (2, 2), (3, 3), None, -40.0),
]


@pytest.mark.parametrize("mode, science_binning, lamp_binning, lamp_roi, offset", CASES)
def test_science_at_any_binning_is_calibrated_by_a_lamp_at_another(mode, science_binning, lamp_binning, lamp_roi,
                                                                    offset):
    plan = make_night(seed=7, lamp=mode, n_bias=0, n_flat=0, n_comp=1, n_science=1, binning=science_binning,
                      lamp_binning=lamp_binning, lamp_roi=lamp_roi, lamp_offset=offset, slit=1.0, lamp_slit=0.45)
    sci_plan = next(f for f in plan.frames if f.kind == "science")
    lamp_plan = next(f for f in plan.frames if f.kind == "comp")
    sci, lamp = _reduce(plan, sci_plan), _reduce(plan, lamp_plan)
    targets, notes = extract_targets(sci.data, sci.mask, sci.header, SETTINGS)
    assert len(targets) == 1, (notes, [(t.target.center, t.target.fwhm) for t in targets])
    ts = targets[0]
    lamp_flux, mapping = lamp_spectrum_for(lamp.data, lamp.header, sci.header, ts.trace, ts.spectrum.aperture)
    assert any("binning" in n for n in mapping)
    done = calibrate_target(ts.spectrum.flux, ts.spectrum.variance, sci.header, ts.spectrum.sky, lamp_flux,
                            lamp.header, SETTINGS, "lamp.fits", mapping)
    truth = {f["name"]: f for f in truth_dict(plan)["frames"]}[sci_plan.filename]["wavelength_solution"]
    scale, offset_x = truth["x_of_column"]
    j = np.arange(ts.spectrum.flux.size, dtype=float)
    true = np.polynomial.chebyshev.chebval(scale * (j + truth["first_lit_col"]) + offset_x, truth["coefficients"])
    err = (done.science_solution.wavelength(j) - true) / np.gradient(true)
    rms = float(np.sqrt(np.mean(err ** 2)))
    print(f"{mode} science {science_binning} lamp {lamp_binning} {lamp_roi or 'full'} offset {offset:+.0f}: "
          f"{done.solution.method} {done.solution.n_lines} lines, lamp rms {done.solution.rms_pixels:.3f} px, "
          f"vs truth rms {rms:.4f} px max {np.max(np.abs(err)):.4f} px, flexure "
          f"{done.flexure.shift if done.flexure else None}")
    assert rms < 0.05 and np.max(np.abs(err)) < 0.15
