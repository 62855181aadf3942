"""A deterministic raw night of the Goodman HTS (SOAR 4.1 m), Red camera ('Spectroscopic 2x2' by default).

Used by the demo (files stream into a watched folder), integration tests, benchmarks and
the reduction tests, which compare what they recover with the recorded truth.

    from infra.simulator import make_night, write_night
    plan = make_night(seed=1)                 # 25 frames: 10 bias, 10 flats, 2 lamps, 3 science
    write_night("out/night", plan)            # FITS files + truth.json, a couple of seconds
    write_night("out/live", plan, cadence=2.0, write_seconds=0.5)   # files appear and grow
    make_night(binning=(1, 1), lamp_binning=(3, 3), roi="Spectroscopic ZZ Ceti", lamp_roi="full",
               slit=1.0, flat_slit=2.0, lamp_offset=22)   # per-frame setups, as on real nights
    make_night(standard="LTT3218")            # + a spectrophotometric standard; targets in erg/s/cm^2/A

Modules: `geometry` (where things are on the raw frame), `reference` (goodman-pipeline's
reference lamps and NIST lists), `plan` (the night as plain data), `spectra` (1-D light
on the truth wavelength scale), `standards` (spectrophotometric standards and extinction,
from the pipeline's data), `cosmics` (cosmic-ray hits), `headers` (raw headers),
`frames` (pixel synthesis), `truth` (truth.json), `writer` (files as the instrument
writes them). ``python -m infra.simulator --out DIR`` is the command line.

Conventions (also recorded in truth.json): 0-based ``data[row, col]``; raw column c maps
to the unbinned reference-lamp coordinate ``x = 2*(c - 25) + 0.5 + shift`` (+ tilt term),
and ``lambda = chebval(x, coefficients)`` of the reference lamp's Chebyshev1D solution.
At serial binning sb: ``x = sb*c + (sb - 1)/2 - 50 + shift`` (truth.json's
per-frame ``wavelength_solution.x_of_column``); see `geometry` for readouts and windows.
"""
from .frames import render_frame
from .plan import FramePlan, NightPlan, make_night
from .reference import list_reference_lamps, load_reference_lamp
from .truth import truth_dict
from .writer import fits_bytes, write_night, write_truth

__all__ = [
    "FramePlan", "NightPlan", "fits_bytes", "list_reference_lamps", "load_reference_lamp",
    "make_night", "render_frame", "truth_dict", "write_night", "write_truth",
]
