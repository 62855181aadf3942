"""Benchmark: the wavelength solution of every reference mode over shifts x binnings.

    .venv/bin/python benchmarks/wavelength_sweep.py [--modes SUBSTR ...] [--shifts -40,-20,0,25,40]
                                                     [--binnings 1,2,3] [--seed 11]

Each goodman-pipeline reference lamp is rendered by the test suite's `simulated_lamp`
(the simulator's lamp model, moved by the shift in unbinned px, tilted, binned b along
the dispersion, noise added, five rows summed) and solved with `wavelength.solve` and
default settings. Per mode and binning, a cell per shift:
``rms/lines/ms`` = RMS against truth over all columns (binned px), lines in the fit,
solve time; ``G`` after the lines marks a grating-equation solution (the reference path
refused and the fallback solved): its first figure is then the largest error at the
reference's own lines, since truth beyond a 4-6 line reference's lines is its cubic's
extrapolation; ``REFUSED`` a refusal. Then a summary per binning and shift, and every
refusal's reason. Always exits 0.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modes", nargs="*", default=None, help="only modes whose name contains one of these")
    ap.add_argument("--shifts", default="-40,-20,0,25,40", help="unbinned px, comma separated")
    ap.add_argument("--binnings", default="1,2,3")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    shifts = [float(v) for v in args.shifts.split(",")]
    binnings = [int(v) for v in args.binnings.split(",")]

    import numpy as np

    from functions.core import lampdata
    from functions.core.wavelength import WavelengthFailure, solve
    from tests.test_core_wavelength import _errors, _errors_at_reference_lines, simulated_lamp  # one truth

    modes = [m for m in lampdata.list_reference_names() if not args.modes or any(s in m for s in args.modes)]
    results = {}
    t_start = time.perf_counter()
    cell_w = 17
    print(f"{'mode':28s} {'b':>2s}  " + "".join(f"{f'shift {s:+.0f}':>{cell_w}s}" for s in shifts))
    for name in modes:
        for b in binnings:
            cells = []
            for shift in shifts:
                flux, header, truth = simulated_lamp(name, seed=args.seed, binning=b, shift=shift)
                t = time.perf_counter()
                try:
                    sol = solve(flux, header)
                except WavelengthFailure as exc:
                    results[name, b, shift] = (None, str(exc), time.perf_counter() - t)
                    cells.append("REFUSED")
                    continue
                dt = time.perf_counter() - t
                err = _errors(sol, truth)
                rms = float(np.sqrt(np.mean(err ** 2)))
                if sol.method != "reference":  # judged where a 4-6 line reference's cubic is truth
                    rms = float(np.abs(_errors_at_reference_lines(name, sol, err, b, shift)).max())
                results[name, b, shift] = (sol, rms, dt)
                mark = "" if sol.method == "reference" else "G"
                cells.append(f"{rms:.4f}/{sol.n_lines}{mark}/{dt * 1e3:.0f}")
            print(f"{name:28s} {b:2d}  " + "".join(f"{c:>{cell_w}s}" for c in cells), flush=True)

    print(f"\nsummary ({len(modes)} modes, {time.perf_counter() - t_start:.0f} s with rendering): per binning and "
          f"shift, solved by the reference path / by the grating equation / refused; worst and median RMS vs "
          f"truth of the reference solutions (binned px); median and max solve time")
    print(f"{'b':>2s} {'shift':>6s} {'ref':>4s} {'grat':>5s} {'refus':>6s} {'worst':>8s} {'median':>8s} "
          f"{'> 0.05':>6s} {'med ms':>7s} {'max ms':>7s}")
    for b in binnings:
        for shift in shifts:
            rows = [results[m, b, shift] for m in modes]
            ref = [r for r in rows if r[0] is not None and r[0].method == "reference"]
            grat = [r for r in rows if r[0] is not None and r[0].method != "reference"]
            refused = [r for r in rows if r[0] is None]
            rms = np.array([r[1] for r in ref]) if ref else np.array([np.nan])
            times = np.array([r[2] for r in rows]) * 1e3
            print(f"{b:2d} {shift:+6.0f} {len(ref):4d} {len(grat):5d} {len(refused):6d} {np.nanmax(rms):8.4f} "
                  f"{np.nanmedian(rms):8.4f} {int(np.sum(rms > 0.05)):6d} {np.median(times):7.0f} "
                  f"{times.max():7.0f}")
    print("\nrefusals and fallbacks:")
    for (name, b, shift), (sol, what, _) in results.items():
        if sol is None:
            print(f"  {name} {b}x {shift:+.0f}: REFUSED {what}")
        elif sol.method != "reference":
            print(f"  {name} {b}x {shift:+.0f}: grating-equation, {sol.n_lines} lines, max error at the reference's "
                  f"lines {what:.3f} px ({sol.note})")
        elif what > 0.05:
            print(f"  {name} {b}x {shift:+.0f}: reference, rms vs truth {what:.3f} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())
