"""Benchmark: raw science frame -> calibrated spectrum, for every mode, on nights the tests do not use.

    .venv/bin/python benchmarks/calibration_sweep.py [--modes SUBSTR ...] [--jobs 2] [--cases N]

For every goodman-pipeline reference mode the simulator renders, a few cases, each a
science frame and a comparison lamp of the same setup drawn from a rotation of:
seeds (not the tests' 1, 4, 7), science binning 1x1 / 2x2 / 3x3, a lamp at another
binning, slit or window (full frame or ZZ Ceti), and a lamp offset of -40..+40 unbinned
px from the reference lamp. Both frames are reduced (overscan and trim, no cosmic rays:
the wavelength chain is what is measured), the targets found, the lamp summed under the
target's aperture carried to its own rows, solved, mapped onto the science columns and
moved by the sky lines (functions/core/spectra.calibrate_target: the service's chain).
Per case: calibrated or the refusal, the RMS and largest error against the science
frame's truth at every column (binned px), lines used, the method. Per mode: calibrated /
total and the worst RMS. The baseline beside it: the same case solved with the lamp at
the science frame's own binning and window and no offset ("matched"), which the service
handled before lamps of other readouts were used. Always exits 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

SEEDS = (21, 33, 58)
SCIENCE = ((1, 1), (2, 2), (3, 3))
LAMPS = (((2, 2), None), ((1, 2), "Spectroscopic ZZ Ceti"), ((3, 3), None), ((1, 1), None))
OFFSETS = (-40.0, -23.0, 18.0, 35.0)


def cases(mode: str, n: int):
    k = sum(map(ord, mode))  # a different rotation per mode, the same on every run
    for i in range(n):
        yield (mode, SEEDS[(k + i) % len(SEEDS)], SCIENCE[(k + i) % len(SCIENCE)], *LAMPS[(k + 2 * i) % len(LAMPS)],
               OFFSETS[(k + 3 * i) % len(OFFSETS)])


def _reduce(plan, frame_plan, settings):
    from functions.core.masters import camera_binning
    from functions.core.reduce import Calibrations, reduce_frame
    from infra.simulator import render_frame

    raw, header = render_frame(plan, frame_plan, cosmic_rays=False)
    cam, binning = camera_binning(header)
    return reduce_frame(raw, header, frame_plan.obstype, cam, binning, Calibrations(), settings)[0]


def run_case(case, matched: bool = False):
    from functions.core.reduce import ReductionSettings
    from functions.core.spectra import calibrate_target, extract_targets, lamp_spectrum_for
    from infra.simulator import make_night
    from infra.simulator.truth import truth_dict

    mode, seed, science_binning, lamp_binning, lamp_roi, offset = case
    settings = ReductionSettings(ignore_bias=True, ignore_flats=True, cosmic_ray_rejection="none")
    kwargs = dict(binning=science_binning, lamp_offset=offset, slit=1.0)
    if not matched:
        kwargs.update(lamp_binning=lamp_binning, lamp_roi=lamp_roi, lamp_slit=0.45)
    else:
        kwargs.update(lamp_offset=0.0)
    t0 = time.process_time()
    plan = make_night(seed=seed, lamp=mode, n_bias=0, n_flat=0, n_comp=1, n_science=1, **kwargs)
    sci_plan = next(f for f in plan.frames if f.kind == "science")
    lamp_plan = next(f for f in plan.frames if f.kind == "comp")
    sci, lamp = _reduce(plan, sci_plan, settings), _reduce(plan, lamp_plan, settings)
    targets, notes = extract_targets(sci.data, sci.mask, sci.header, settings)
    out = {"case": case, "matched": matched, "targets": len(targets)}
    if len(targets) != 1:
        out.update(ok=False, reason=f"{len(targets)} targets: {notes}")
        return out
    ts = targets[0]
    lamp_flux, mapping = lamp_spectrum_for(lamp.data, lamp.header, sci.header, ts.trace, ts.spectrum.aperture)
    try:
        done = calibrate_target(ts.spectrum.flux, ts.spectrum.variance, sci.header, ts.spectrum.sky, lamp_flux,
                                lamp.header, settings, "lamp.fits", mapping)
    except ValueError as exc:
        out.update(ok=False, reason=str(exc))
        return out
    truth = {f["name"]: f for f in truth_dict(plan)["frames"]}[sci_plan.filename]["wavelength_solution"]
    scale, off = truth.get("x_of_column", (2, -50.0 + 0.5 + truth["shift"]))
    first = truth.get("first_lit_col", 25)
    j = np.arange(ts.spectrum.flux.size, dtype=float)
    true = np.polynomial.chebyshev.chebval(scale * (j + first) + off, truth["coefficients"])
    err = (done.science_solution.wavelength(j) - true) / np.abs(np.gradient(true))
    out.update(ok=True, rms=float(np.sqrt(np.mean(err ** 2))), max=float(np.max(np.abs(err))),
               lines=done.solution.n_lines, method=done.solution.method,
               flexure=None if done.flexure is None else round(done.flexure.shift, 3),
               cpu=round(time.process_time() - t0, 2))
    return out


def _both(case):
    """(ours, baseline); a case the simulator cannot render (a Blue-camera reference lamp)
    is None; an exception anywhere else is a crash, reported as such."""
    from infra.simulator import make_night

    try:
        make_night(seed=1, lamp=case[0], n_bias=0, n_flat=0, n_comp=1, n_science=0)
    except ValueError:
        return None
    out = []
    for matched in (False, True):
        try:
            out.append(run_case(case, matched))
        except Exception as exc:  # a crash is a finding, not the end of the sweep
            out.append({"case": case, "matched": matched, "ok": False, "reason": f"CRASH {type(exc).__name__}: {exc}"})
    return tuple(out)


def main(argv=None) -> int:
    from infra.simulator import list_reference_lamps

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", nargs="*", default=None, help="substrings of reference lamp names")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--cases", type=int, default=2, help="cases per mode")
    args = ap.parse_args(argv)
    modes = [m for m in list_reference_lamps() if not args.modes or any(s in m for s in args.modes)]
    todo = [c for m in modes for c in cases(m, args.cases)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(_both, todo))
    skipped = sorted({c[0] for c, r in zip(todo, results) if r is None})
    results = [r for r in results if r is not None]
    if skipped:
        print(f"not rendered (the simulator writes Red-camera frames only): {', '.join(skipped)}")
    print(f"{len(results)} cases over {len(modes) - len(skipped)} modes in {time.perf_counter() - t0:.0f} s ({args.jobs} processes)\n")
    print(f"{'mode':28s} {'seed':>4s} {'sci':>4s} {'lamp':>4s} {'window':7s} {'offset':>6s}  "
          f"{'ours: rms/max px, lines, method':38s} {'matched lamp (baseline)':24s}")
    per_mode = {}
    for ours, base in results:
        mode, seed, sb, lb, roi, offset = ours["case"]

        def cell(r):
            if not r["ok"]:
                return "REFUSED"
            return f"{r['rms']:.4f}/{r['max']:.4f} {r['lines']:3d} {r['method'][:9]}"
        print(f"{mode:28s} {seed:4d} {sb[0]}x{sb[1]} {lb[0]}x{lb[1]} {'ZZCeti' if roi else 'full':7s} {offset:+6.0f}  "
              f"{cell(ours):38s} {cell(base):24s}")
        m = per_mode.setdefault(mode, {"n": 0, "ok": 0, "rms": [], "base_ok": 0, "base_rms": [], "reasons": []})
        m["n"] += 1
        m["ok"] += ours["ok"]
        m["base_ok"] += base["ok"]
        if ours["ok"]:
            m["rms"].append(ours["rms"])
        else:
            m["reasons"].append(ours["reason"][:160])
        if base["ok"]:
            m["base_rms"].append(base["rms"])
    print(f"\n{'mode':28s} {'calibrated':>10s} {'worst rms px':>12s} | {'matched: calibrated':>19s} {'worst rms':>9s}")
    total = base_total = n = 0
    worst = []
    for mode, m in per_mode.items():
        w = f"{max(m['rms']):.4f}" if m["rms"] else "-"
        bw = f"{max(m['base_rms']):.4f}" if m["base_rms"] else "-"
        print(f"{mode:28s} {m['ok']:>5d}/{m['n']:<4d} {w:>12s} | {m['base_ok']:>14d}/{m['n']:<4d} {bw:>9s}")
        total, base_total, n = total + m["ok"], base_total + m["base_ok"], n + m["n"]
        worst += m["rms"]
    print(f"\nall modes: calibrated {total}/{n} (matched-lamp baseline {base_total}/{n}); rms against truth "
          f"median {np.median(worst):.4f} px, worst {np.max(worst):.4f} px, "
          f"{sum(r > 0.05 for r in worst)} above 0.05 px")
    print("\nrefusals:")
    for mode, m in per_mode.items():
        for reason in m["reasons"]:
            print(f"  {mode}: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
