"""Benchmark: raw frame to calibrated spectrum, ours vs goodman-pipeline's redccd + redspec.

    .venv/bin/python benchmarks/spectra.py [--keep DIR] [--skip-goodman] [--json FILE]

Writes the seed-1 night (25 frames, 400M2_GG455_HgArNe, 2x2) to a work dir, then
(a) ours, in a subprocess, the chain the service runs (functions/reduction.py and
    functions/spectroscopy.py, without S3, the index, the no-cosmic quick look and the
    PNG plots): master bias and flat (timed apart), every lamp reduced once, then per
    science frame two stages, timed apart:
    - the spectrum path, raw frame to calibrated spectrum: reduce_frame with the cosmic
      step deferred -> extract_targets with clean_windows (L.A.Cosmic on the rows the
      extractions read only; + the `ecfzst_` bytes) -> choose_lamp -> per target
      lamp_spectrum along its trace -> spectra.calibrate_target (solve, flexure from the
      sky lines, both `wecfzst_`);
    - the deferred 2-D clean, what the background task runs afterwards: reduce_frame
      with the cosmic step (the whole frame through L.A.Cosmic) -> the `cfzst_` FITS bytes.
    CPU and wall per step; the raw files are read outside the timed steps;
(b) goodman-pipeline 3.1.0: redccd (as benchmarks/ccd.py runs it) then redspec on its
    output, each in its own subprocess with a temp cwd, without setup_logging (its
    log file and version check over the network), matplotlib on Agg, no plots; CPU and
    peak RSS of each child from os.wait4, wall per science file from its log times.
The like-for-like figure is goodman against both our stages (goodman cleans the whole
frame before it extracts); the spectrum path alone is what an observer waits for.
Then the wavelength error of every calibrated science spectrum against the simulator's
truth at the target's true trace row: against the science frame's truth (what the
observer gets: ours corrects the lamp-to-science flexure with the sky lines, goodman
does not)
and against the lamp's truth (the accuracy of the lamp solution itself).
Prints tables; writes results.json into the work dir, and with --json FILE a summary
(seconds per science frame, ratios, peak RSS, wavelength errors; see `summary`);
always exits 0.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.ccd import GOODMAN, PY, bench_args, build_masters, read_raw  # noqa: E402

#: redspec with goodman's own defaults, minus its logging setup (log file in the cwd and
#: a version check over the network) and with no plots; log records carry their time
#: since start (ms) so the seconds per science file can be read back.
GOODMAN_SPEC = ("import sys, logging\n"
                "logging.basicConfig(level=logging.INFO, format='%(relativeCreated).0f %(name)s %(levelname)s "
                "%(message)s')\n"
                "from goodman_pipeline.spectroscopy.redspec import ReduceSpectroscopy, get_args\n"
                "ReduceSpectroscopy()(get_args(['--data-path', sys.argv[1], '--proc-path', sys.argv[2]]))\n")


# ---------------------------------------------------------------------------- helpers
def _section(text: str):
    """'[x1:x2,y1:y2]' (FITS, 1-based) -> (x1, x2, y1, y2)."""
    m = re.match(r"\[(\d+):(\d+),(\d+):(\d+)\]", str(text).strip())
    if not m:
        raise ValueError(f"not a FITS section: {text!r}")
    return tuple(int(v) for v in m.groups())


def raw_offsets(header):
    """(row, column) to add to a reduced frame's 0-based (row, column) to get the raw
    frame's: the detector trim (GSP_TRIM) then the slit trim (GSP_SLIT) cut both."""
    x1, _, y1, _ = _section(header["GSP_TRIM"])
    sx1, _, sy1, _ = _section(header.get("GSP_SLIT", "[1:1,1:1]"))
    return (y1 - 1) + (sy1 - 1), (x1 - 1) + (sx1 - 1)


@contextlib.contextmanager
def timed(steps, name):
    """Add the CPU and wall seconds of the block to steps[name]."""
    t, w = time.process_time(), time.perf_counter()
    try:
        yield
    finally:
        s = steps.setdefault(name, {"cpu": 0.0, "wall": 0.0})
        s["cpu"] += time.process_time() - t
        s["wall"] += time.perf_counter() - w


def run_measured(cmd, cwd, log_path, timeout=1800, env=None):
    """Run a child; (exit code, wall s, CPU s, peak RSS MB) of that child alone (os.wait4)."""
    with open(log_path, "w") as log:
        w = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            _, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - w
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024.0


# ---------------------------------------------------------------------------- ours
def fits_bytes(frame) -> bytes:
    """The reduced 2-D frame as the service writes it (functions/reduction.py's _fits_bytes)."""
    import io

    from astropy.io import fits

    buf = io.BytesIO()
    fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def ours(raw_dir: str, out_json: str, out_dir: str) -> None:
    """Run in a subprocess: the service's chain on the night, timings and solutions as JSON."""
    import numpy as np

    from functions.core import reduce as R
    from functions.core.calibrations import choose_lamp
    from functions.core.spectra import (calibrate_target, extract_targets, extracted_fits, lamp_spectrum,
                                        trace_from_summary)
    from functions.core.wavelength import WavelengthFailure

    t_all, w_all = time.process_time(), time.perf_counter()
    by, read_cpu = read_raw(raw_dir)
    cal, res = build_masters(by)
    res.update(read_cpu=read_cpu, lamps=[], science=[])
    settings = R.ReductionSettings()

    def reduce(name, d, h, kind, steps, step="reduce", defer_cosmic=False):
        binning = tuple(int(v) for v in str(h.get("CCDSUM", "2 2")).split())
        with timed(steps, step):
            frame, rep = R.reduce_frame(d, h, kind, str(h.get("INSTCONF", "Red")), binning, cal, settings,
                                        defer_cosmic=defer_cosmic)
        steps[step]["cosmic_cpu"] = rep["timings"].get("cosmic", 0.0)
        return frame, rep

    lamps = []
    for name, d, h in by.get("COMP", []):
        steps = {}
        frame, _ = reduce(name, d, h, "COMP", steps)
        lamps.append({"file_name": name, "date_obs": h.get("DATE-OBS"),
                      "data": np.asarray(frame.data, dtype=float), "header": frame.header})
        res["lamps"].append({"name": name, **steps["reduce"]})

    for name, d, h in by.get("OBJECT", []):
        steps, targets, outputs = {}, [], {}
        # ---- stage 1, the spectrum path: raw -> calibrated spectrum, cosmic rays rejected in the
        # extraction rows only
        t, w = time.process_time(), time.perf_counter()
        frame, rep = reduce(name, d, h, "OBJECT", steps, defer_cosmic=True)
        with timed(steps, "clean_rows+extract"):
            spectra, notes = extract_targets(frame.data, frame.mask, frame.header, settings, clean_windows=True,
                                             report=rep)
            summaries = [ts.summary() for ts in spectra]
            for ts in spectra:
                outputs[f"e{rep['prefix']}{name[:-5]}_target_{ts.number}.fits"] = extracted_fits(ts, frame.header)
        with timed(steps, "choose_lamp"):
            lamp = choose_lamp(lamps, h.get("DATE-OBS"))
        for ts, s in zip(spectra, summaries):
            entry = {"number": ts.number, "trace": list(s["trace"]), "row": s["row"],
                     "aperture_rows": s["aperture_rows"]}
            targets.append(entry)
            if lamp is None:
                entry["error"] = "no comparison lamp"
                continue
            with timed(steps, "lamp_extract"):
                lamp_flux = lamp_spectrum(lamp["data"], trace_from_summary(s), s["aperture_rows"])
            try:
                with timed(steps, "solve+flexure+fits"):
                    done = calibrate_target(ts.spectrum.flux, ts.spectrum.variance, frame.header, ts.spectrum.sky,
                                            lamp_flux, lamp["header"], settings, lamp["file_name"])
            except WavelengthFailure as exc:
                entry["error"] = f"WavelengthFailure: {exc}"
                continue
            outputs[f"we{rep['prefix']}{name[:-5]}_target_{ts.number}.fits"] = done.science_fits
            outputs[f"we{rep['prefix']}{lamp['file_name'][:-5]}_for_{name[:-5]}_target_{ts.number}.fits"] = \
                done.lamp_fits
            # the solution of the science spectrum: the lamp's, moved by the flexure the sky lines measured
            summary = done.science_solution.as_dict()
            summary.pop("lines", None)
            summary["flexure_px"] = done.flexure.shift if done.flexure else None
            entry.update(lamp=lamp["file_name"], solution=summary)
        spectrum = {"cpu": time.process_time() - t, "wall": time.perf_counter() - w}
        # ---- stage 2, the deferred 2-D clean (the background task): the frame reduced again,
        # the whole of it through L.A.Cosmic, and its FITS bytes
        t, w = time.process_time(), time.perf_counter()
        cleaned, crep = reduce(name, d, h, "OBJECT", steps, step="clean_reduce")
        with timed(steps, "clean_fits"):
            outputs[crep["prefix"] + name] = fits_bytes(cleaned)
        clean = {"cpu": time.process_time() - t, "wall": time.perf_counter() - w,
                 "cosmic_pixels": crep["cosmic_pixels"]}
        row_off, col_off = raw_offsets(frame.header)
        spectrum["cosmic_windows"] = rep.get("cosmic_windows")
        res["science"].append({"name": name, "cpu": spectrum["cpu"] + clean["cpu"],
                               "wall": spectrum["wall"] + clean["wall"], "spectrum": spectrum, "clean": clean,
                               "steps": steps, "notes": notes, "row_offset": row_off, "col_offset": col_off,
                               "n_columns": int(frame.data.shape[1]), "targets": targets})
        for out_name, body in outputs.items():  # outside the timing, for a look afterwards
            with open(os.path.join(out_dir, out_name), "wb") as fh:
                fh.write(body)
    res["total_cpu"] = time.process_time() - t_all
    res["total_wall"] = time.perf_counter() - w_all
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)


# ---------------------------------------------------------------------------- goodman
def goodman_per_file(log_path: str):
    """Wall seconds per science file of redspec, from its log times: from one
    'Processing Science File' record to the next (or END). The first file of a group
    also pays for reading the group's lamps."""
    marks = []
    with open(log_path) as fh:
        for line in fh:
            m = re.match(r"(\d+) \S+ \w+ (Processing Science File: (\S+)|END)", line)
            if m:
                marks.append((float(m.group(1)) / 1000.0, m.group(3)))
    return {name: t1 - t0 for (t0, name), (t1, _) in zip(marks, marks[1:]) if name}


def goodman_spectra(spec_dir: str):
    """Goodman's calibrated science spectra: per `wecfzst_` OBJECT file, the wavelength
    of every pixel of the extracted spectrum (its non-linear solution, GSP_FUNC/GSP_C###,
    as evaluated in the SPECTRUM table's WAVELENGTH column), the trace, the lamp."""
    import numpy as np
    from astropy.io import fits
    from numpy.polynomial import chebyshev

    out = []
    for path in sorted(glob.glob(os.path.join(spec_dir, "wecfzst_*.fits"))):
        with fits.open(path) as hdul:
            h = hdul[0].header
            if str(h.get("OBSTYPE", "")).strip() != "OBJECT":
                continue
            wl = np.asarray(hdul["SPECTRUM"].data["WAVELENGTH"], dtype=float)
        entry = {"file": os.path.basename(path), "raw": h.get("GSP_ONAM"), "wavelength": wl,
                 "trace": [float(h[f"GSP_TC{i:02d}"]) for i in range(int(h.get("GSP_TORD", -1)) + 1)],
                 "rms_angstrom": h.get("GSP_WRMS"), "n_lines": h.get("GSP_WPOI"), "offsets": raw_offsets(h)}
        if str(h.get("GSP_FUNC", "")) == "Chebyshev1D":
            c = [float(h[f"GSP_C{i:03d}"]) for i in range(int(h["GSP_ORDR"]) + 1)]
            entry["cards_vs_table"] = float(np.max(np.abs(chebyshev.chebval(np.arange(wl.size), c) - wl)))
        lamp_file = os.path.join(spec_dir, os.path.basename(str(h.get("GSP_LAMP", ""))))
        if os.path.isfile(lamp_file):
            entry["lamp"] = fits.getheader(lamp_file).get("GSP_ONAM")
        out.append(entry)
    return out


# ---------------------------------------------------------------------------- truth
def truth_error(wavelength, col_offset: int, frame_truth, lamp_truth, truth):
    """Errors (pipeline - truth) of a solution over every column of the spectrum, at the
    target's true trace row: against the science frame's truth and against its lamp's;
    also over the columns between the lamp's first and last identified line only (the
    rest is extrapolation for any lamp solution)."""
    import numpy as np
    from numpy.polynomial import chebyshev

    from infra.simulator.geometry import BINNING, column_to_x

    coeffs = truth["wavelength_solution"]["coefficients"]
    tilt = truth["tilt_px_per_100_rows"]
    cols = np.arange(len(wavelength)) + col_offset
    tr = frame_truth["trace"]
    rows = tr["y0"] + tr["a"] * (cols - tr["xc"]) + tr["b"] * (cols - tr["xc"]) ** 2
    line_x = [line["x"] for line in truth["comparison_lamp"]["lines"] if line["identified"]]
    out = {}
    for label, ft in (("science", frame_truth), ("lamp", lamp_truth)):
        if ft is None:
            continue
        x = column_to_x(cols, ft["shift"], rows, tilt)
        err = np.asarray(wavelength) - chebyshev.chebval(x, coeffs)
        err_px = err / (BINNING * chebyshev.chebval(x, chebyshev.chebder(coeffs)))
        inside = err_px[(x >= min(line_x)) & (x <= max(line_x))]
        out[label] = {"mean_A": float(err.mean()), "rms_A": float(np.sqrt(np.mean(err ** 2))),
                      "max_A": float(np.max(np.abs(err))), "mean_px": float(err_px.mean()),
                      "rms_px": float(np.sqrt(np.mean(err_px ** 2))), "max_px": float(np.max(np.abs(err_px))),
                      "rms_px_lines": float(np.sqrt(np.mean(inside ** 2))),
                      "max_px_lines": float(np.max(np.abs(inside)))}
    if lamp_truth is not None:
        out["flexure_px"] = (frame_truth["shift"] - lamp_truth["shift"]) / BINNING
    return out


def trace_match(trace_coeffs, row_offset: int, col_offset: int, frame_truth, n_columns: int) -> float:
    """Found minus true trace row (raw rows) at the middle column."""
    import numpy as np

    j = (n_columns - 1) / 2.0
    c = j + col_offset
    tr = frame_truth["trace"]
    true_row = tr["y0"] + tr["a"] * (c - tr["xc"]) + tr["b"] * (c - tr["xc"]) ** 2
    return float(np.polynomial.polynomial.polyval(j, trace_coeffs) + row_offset - true_row)


# ---------------------------------------------------------------------------- report
def _err_row(label, e):
    s, lp = e.get("science"), e.get("lamp")
    cells = (f"{s['mean_A']:+8.3f}{s['rms_A']:8.3f}{s['max_A']:8.3f}{s['mean_px']:+8.3f}{s['rms_px']:8.3f}"
             f"{s['max_px']:8.3f}" if s else " " * 48)
    lamp_cells = (f"{lp['mean_px']:+8.3f}{lp['rms_px']:8.3f}{lp['max_px']:8.3f}{lp['rms_px_lines']:8.3f}"
                  f"{lp['max_px_lines']:8.3f}" if lp else " " * 40)
    flex = f"{e['flexure_px']:+7.3f}" if "flexure_px" in e else ""
    return f"{label:<44}{cells}  |{lamp_cells}  |{flex}"


ERR_HEADER = (f"{'spectrum':<44}{'mean Å':>8}{'rms Å':>8}{'max Å':>8}{'mean px':>8}{'rms px':>8}{'max px':>8}  |"
              f"{'mean px':>8}{'rms px':>8}{'max px':>8}{'rms(l)':>8}{'max(l)':>8}  |{'flex px':>7}\n"
              f"{'':<44}{'--- vs the science frame truth ---':^48}  |{'------ vs its lamp truth ------':^40}  |")


def _summary(errors, key):
    import numpy as np

    vals = [e[key] for e in errors if key in e]
    if not vals:
        return None
    return {k: float(np.max(np.abs([v[k] for v in vals]))) if k.startswith("max") else
            float(np.sqrt(np.mean(np.square([v[k] for v in vals])))) if k.startswith("rms") else
            float(np.mean([v[k] for v in vals])) for k in vals[0]}


def summary(results) -> dict:
    """The figures --json writes: seconds per science frame of ours (total = spectrum path +
    deferred 2-D clean; each stage) and of goodman (redccd + redspec over the night / number
    of science frames), goodman / ours (None when either is missing), peak RSS of our
    subprocess and of goodman's largest child, and the wavelength errors' summary."""
    o = (results.get("ours") or {}).get("per_science") or {}
    g = results.get("goodman") or {}
    gp = g.get("per_science") or {}

    def ratio(num, den):
        return num / den if num is not None and den else None

    errors = results.get("wavelength_errors", {})
    goodman_rss = [g[step]["peak_rss_mb"] for step in ("redccd", "redspec") if step in g]
    return {
        "n_science": results["n_science"],
        "ours_cpu_per_science": o.get("cpu"), "ours_wall_per_science": o.get("wall"),
        "ours_spectrum_cpu_per_science": o.get("spectrum_cpu"),
        "ours_spectrum_wall_per_science": o.get("spectrum_wall"),
        "ours_clean_cpu_per_science": o.get("clean_cpu"), "ours_clean_wall_per_science": o.get("clean_wall"),
        "ours_night_cpu_per_science": o.get("night_cpu"), "ours_night_wall_per_science": o.get("night_wall"),
        "goodman_cpu_per_science": gp.get("cpu"), "goodman_wall_per_science": gp.get("wall"),
        "goodman_redspec_cpu_per_science": gp.get("redspec_cpu"),
        "ratio": ratio(gp.get("cpu"), o.get("cpu")),
        "ratio_spectrum": ratio(gp.get("cpu"), o.get("spectrum_cpu")),
        "ratio_night": ratio(gp.get("cpu"), o.get("night_cpu")),
        "ratio_wall": ratio(gp.get("wall"), o.get("wall")),
        "ratio_spectrum_wall": ratio(gp.get("wall"), o.get("spectrum_wall")),
        "ours_peak_rss_mb": ((results.get("ours") or {}).get("subprocess") or {}).get("peak_rss_mb"),
        "goodman_peak_rss_mb": max(goodman_rss) if goodman_rss else None,
        "goodman_peak_rss_mb_by_step": {step: g[step]["peak_rss_mb"] for step in ("redccd", "redspec") if step in g},
        "wavelength_errors": {name: {key: _summary(errors.get(name, []), key) for key in ("science", "lamp")}
                              for name in ("ours", "goodman")},
        "work_dir": results["work_dir"],
    }


def _args(argv=None):
    """benchmarks/ccd.py's command line plus --json FILE."""
    import argparse

    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--json", metavar="FILE", help="also write the summary figures (see `summary`) to FILE")
    known, rest = ap.parse_known_args(argv)
    a = bench_args(rest)
    a.json = known.json
    return a


def main() -> int:
    a = _args()
    if a._ours:
        ours(*a._ours)
        return 0
    import numpy as np
    from numpy.polynomial import chebyshev

    from infra.simulator import make_night, truth_dict, write_night

    base = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="bench_spectra_")
    raw, out_ours, red_gsp, spec_gsp, cwd = (os.path.join(base, d) for d in
                                             ("raw", "ours", "red_goodman", "spec_goodman", "cwd"))
    for d in (out_ours, red_gsp, spec_gsp, cwd):
        # emptied: redccd does nothing (and exits 0) when its output folder is not empty
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    plan = make_night(seed=1)
    t = time.perf_counter()
    write_night(raw, plan)
    truth = truth_dict(plan)
    frames_truth = {f["name"]: f for f in truth["frames"]}
    n_sci = sum(1 for f in truth["frames"] if f["obstype"] == "OBJECT")
    print(f"simulated night (seed 1, {truth['reference_lamp']['name']}, {len(truth['frames'])} frames, "
          f"{n_sci} science) written to {raw} in {time.perf_counter() - t:.1f} s")
    results = {"work_dir": base, "n_science": n_sci}

    # ---- ours
    js = os.path.join(base, "ours.json")
    if os.path.exists(js):
        os.remove(js)
    rc, o_wall, o_cpu, o_rss = run_measured([PY, os.path.abspath(__file__), "--_ours", raw, js, out_ours], cwd,
                                            os.path.join(base, "ours.log"))
    res = json.load(open(js)) if rc == 0 and os.path.exists(js) else None
    if res is None:
        print("\n" + "!" * 78 + f"\n!!! OURS FAILED (exit {rc}); log {os.path.join(base, 'ours.log')}:\n"
              + open(os.path.join(base, "ours.log")).read()[-3000:] + "\n" + "!" * 78)
    else:
        results["ours"] = {**res, "subprocess": {"cpu": o_cpu, "wall": o_wall, "peak_rss_mb": o_rss}}
        print("\n== ours (functions/core, the service's chain), per science frame ==")
        print(f"{'':<34}{'spectrum path':>16}{'deferred clean':>16}{'total':>16}")
        print(f"{'frame':<34}" + f"{'CPU s':>8}{'wall s':>8}" * 3)
        names = ("reduce", "clean_rows+extract", "lamp_extract", "solve+flexure+fits", "clean_reduce", "clean_fits")
        for f in res["science"]:
            sp, cl = f["spectrum"], f["clean"]
            print(f"{f['name']:<34}{sp['cpu']:>8.3f}{sp['wall']:>8.3f}{cl['cpu']:>8.3f}{cl['wall']:>8.3f}"
                  f"{f['cpu']:>8.3f}{f['wall']:>8.3f}")
            print(f"{'':<4}CPU s: " + ", ".join(f"{n} {f['steps'].get(n, {}).get('cpu', 0.0):.3f}" for n in names)
                  + f" (of which L.A.Cosmic {f['steps']['clean_reduce']['cosmic_cpu']:.2f})")
            for note in f["notes"]:
                print(f"{'':<4}{note}")
            cw = sp.get("cosmic_windows") or {}
            print(f"{'':<4}before extraction: {cw.get('pixels')} pixels flagged in rows {cw.get('rows')} "
                  f"({str(cw.get('method')).split(' sigclip')[0]}); whole frame: {cl['cosmic_pixels']} pixels flagged")
        n_done = max(len(res["science"]), 1)
        per = {stage: {k: sum((f[stage] if stage else f)[k] for f in res["science"]) / n_done for k in ("cpu", "wall")}
               for stage in ("spectrum", "clean", None)}
        lamp_cpu, lamp_wall = sum(x["cpu"] for x in res["lamps"]), sum(x["wall"] for x in res["lamps"])
        mast_cpu = res["master_bias"]["cpu"] + res["master_flat"]["cpu"]
        mast_wall = res["master_bias"]["wall"] + res["master_flat"]["wall"]
        night_cpu = (mast_cpu + lamp_cpu) / n_sci + per[None]["cpu"]
        night_wall = (mast_wall + lamp_wall) / n_sci + per[None]["wall"]
        print(f"{'mean per science frame':<34}" + "".join(f"{per[k]['cpu']:>8.3f}{per[k]['wall']:>8.3f}"
                                                           for k in ("spectrum", "clean", None)))
        print(f"{'lamps reduced (%d), total' % len(res['lamps']):<34}{'':>32}{lamp_cpu:>8.3f}{lamp_wall:>8.3f}")
        print(f"{'masters bias + flat':<34}{'':>32}{mast_cpu:>8.3f}{mast_wall:>8.3f}")
        print(f"{'night / science frame (*)':<34}{'':>32}{night_cpu:>8.3f}{night_wall:>8.3f}")
        print(f"{'reading raw files (not timed)':<34}{'':>32}{res['read_cpu']:>8.3f}")
        print(f"{'subprocess (imports, reading)':<34}{'':>32}{o_cpu:>8.3f}{o_wall:>8.3f}   peak RSS {o_rss:.0f} MB")
        print("(*) masters and lamp reductions shared out over the science frames, plus the mean total per frame")
        results["ours"]["per_science"] = {"cpu": per[None]["cpu"], "wall": per[None]["wall"],
                                          "spectrum_cpu": per["spectrum"]["cpu"],
                                          "spectrum_wall": per["spectrum"]["wall"],
                                          "clean_cpu": per["clean"]["cpu"], "clean_wall": per["clean"]["wall"],
                                          "night_cpu": night_cpu, "night_wall": night_wall}

    # ---- goodman
    g = None
    if a.skip_goodman:
        print("\n(goodman skipped)")
    else:
        import importlib.util

        if importlib.util.find_spec("goodman_pipeline") is None:
            print("\n!!! goodman_pipeline is not installed: skipping its run")
        else:
            env = {**os.environ, "MPLBACKEND": "Agg"}
            g = {}
            for step, cmd in (("redccd", [PY, "-c", GOODMAN, raw, red_gsp]),
                              ("redspec", [PY, "-c", GOODMAN_SPEC, red_gsp, spec_gsp])):
                log = os.path.join(base, f"goodman_{step}.log")
                rc, wall, cpu, rss = run_measured(cmd, cwd, log, env=env)
                g[step] = {"exit": rc, "wall": wall, "cpu": cpu, "peak_rss_mb": rss, "log": log}
                made = glob.glob(os.path.join(red_gsp if step == "redccd" else spec_gsp, "*.fits"))
                if rc != 0 or not made:
                    print("\n" + "!" * 78 + f"\n!!! GOODMAN {step.upper()} FAILED (exit {rc}, {len(made)} files "
                          f"written); log {log}:\n" + open(log).read()[-3000:] + "\n" + "!" * 78)
                    g[step]["exit"] = rc or "no output"
                    break
            if g.get("redspec", {}).get("exit") == 0:
                g["redspec_per_file_wall"] = goodman_per_file(g["redspec"]["log"])
            results["goodman"] = g
            print("\n== goodman-pipeline 3.1.0: redccd --cosmic lacosmic, then redspec (its defaults) ==")
            print(f"{'':<34}{'CPU s':>8}{'wall s':>8}{'peak RSS MB':>13}")
            for step in ("redccd", "redspec"):
                if step in g:
                    s = g[step]
                    print(f"{step:<34}{s['cpu']:>8.2f}{s['wall']:>8.2f}{s['peak_rss_mb']:>13.0f}   exit {s['exit']}")
            for name, w in sorted(g.get("redspec_per_file_wall", {}).items()):
                print(f"{'  redspec ' + name[6:26]:<34}{'':>8}{w:>8.2f}   (from its log)")
            if all(g.get(step, {}).get("exit") == 0 for step in ("redccd", "redspec")):
                tot_cpu = g["redccd"]["cpu"] + g["redspec"]["cpu"]
                tot_wall = g["redccd"]["wall"] + g["redspec"]["wall"]
                g["per_science"] = {"cpu": tot_cpu / n_sci, "wall": tot_wall / n_sci,
                                    "redspec_cpu": g["redspec"]["cpu"] / n_sci,
                                    "redspec_wall": g["redspec"]["wall"] / n_sci}
                print(f"{'(redccd + redspec) / science frame':<34}{tot_cpu / n_sci:>8.2f}{tot_wall / n_sci:>8.2f}")
                print(f"{'redspec / science frame':<34}{g['redspec']['cpu'] / n_sci:>8.2f}"
                      f"{g['redspec']['wall'] / n_sci:>8.2f}")
                print("(per file: from one 'Processing Science File' log record to the next; a group's first "
                      "file also reads its lamps)")
                print("(goodman's totals include its Python start-up, imports, reading and writing every file)")

    # ---- seconds per science frame, side by side
    if res is not None and g and "per_science" in g:
        o, gp = results["ours"]["per_science"], g["per_science"]
        sub_cpu, sub_wall = o_cpu / n_sci, o_wall / n_sci
        print(f"\n== seconds per science frame, raw -> calibrated spectrum ({n_sci} science frames) ==")
        print(f"{'':<52}{'CPU s':>8}{'wall s':>8}{'goodman/ours CPU':>18}{'wall':>7}")
        rows = [("ours, spectrum path (what the observer waits for)", o["spectrum_cpu"], o["spectrum_wall"]),
                ("ours, + the deferred 2-D clean (like for like)", o["cpu"], o["wall"]),
                ("ours, both + share of masters and lamps", o["night_cpu"], o["night_wall"]),
                ("ours, whole subprocess / n (imports, reading too)", sub_cpu, sub_wall)]
        for label, c, w in rows:
            print(f"{label:<52}{c:>8.2f}{w:>8.2f}{gp['cpu'] / c:>18.1f}{gp['wall'] / w:>7.1f}")
        print(f"{'goodman, (redccd + redspec) / n':<52}{gp['cpu']:>8.2f}{gp['wall']:>8.2f}")
        print(f"{'goodman, redspec alone / n':<52}{gp['redspec_cpu']:>8.2f}{gp['redspec_wall']:>8.2f}")
        results["ratio_goodman_over_ours"] = {label: {"cpu": gp["cpu"] / c, "wall": gp["wall"] / w}
                                              for label, c, w in rows}

    # ---- wavelength error against truth
    print("\n== wavelength error against the simulator's truth, every column, at the true trace row ==")
    print("   px = binned pixels (error / truth dispersion per binned pixel); (l) = only the columns between "
          "the lamp's first and\n   last identified line; flex px = science minus lamp flexure shift (binned px), "
          "which a lamp solution cannot\n   know and which shows up in the science-truth mean")
    print(ERR_HEADER)
    ours_errors, gsp_errors = [], []
    if res is not None:
        for f in res["science"]:
            ft = frames_truth[f["name"]]
            for tg in f["targets"]:
                label = f"ours {f['name'][:22]} #{tg['number']}"
                if "solution" not in tg:
                    print(f"{label:<44}!!! no solution: {tg.get('error')}")
                    continue
                wl = chebyshev.chebval(np.arange(f["n_columns"]), tg["solution"]["coefficients"])
                e = truth_error(wl, f["col_offset"], ft, frames_truth.get(tg["lamp"]), truth)
                e["trace_offset_rows"] = trace_match(tg["trace"], f["row_offset"], f["col_offset"], ft, f["n_columns"])
                e.update(frame=f["name"], target=tg["number"], lamp_file=tg["lamp"],
                         method=tg["solution"]["method"], n_lines=tg["solution"]["n_lines"],
                         fit_rms_angstrom=tg["solution"]["rms_angstrom"])
                ours_errors.append(e)
                print(_err_row(label, e) + f"   trace {e['trace_offset_rows']:+.2f} rows, lamp {tg['lamp'][:4]}, "
                      f"{e['n_lines']} lines, {e['method']}")
    if g and "redspec" in g:
        found = goodman_spectra(spec_gsp)
        if not found:
            print("!!! goodman wrote no calibrated science spectrum (wecfzst_ OBJECT files)")
        for s in found:
            ft = frames_truth.get(s["raw"])
            if ft is None:
                print(f"goodman {s['file']}: raw file {s['raw']!r} not in the truth")
                continue
            row_off, col_off = s["offsets"]
            e = truth_error(s["wavelength"], col_off, ft, frames_truth.get(s.get("lamp")), truth)
            e["trace_offset_rows"] = trace_match(s["trace"], row_off, col_off, ft, len(s["wavelength"]))
            e.update(frame=s["raw"], file=s["file"], lamp_file=s.get("lamp"), n_lines=s["n_lines"],
                     fit_rms_angstrom=s["rms_angstrom"], cards_vs_table=s.get("cards_vs_table"))
            gsp_errors.append(e)
            print(_err_row(f"goodman {s['file'][8:38]}", e) + f"   trace {e['trace_offset_rows']:+.2f} rows, lamp "
                  f"{str(s.get('lamp'))[:4]}, {s['n_lines']} lines")
    print()
    for name, errs in (("ours", ours_errors), ("goodman", gsp_errors)):
        for key in ("science", "lamp"):
            sm = _summary(errs, key)
            if sm:
                print(f"{name + ' all spectra vs ' + key + ' truth':<44}mean {sm['mean_A']:+.3f} Å "
                      f"({sm['mean_px']:+.3f} px), rms {sm['rms_A']:.3f} Å ({sm['rms_px']:.3f} px), "
                      f"max |err| {sm['max_A']:.3f} Å ({sm['max_px']:.3f} px); between the lamp lines rms "
                      f"{sm['rms_px_lines']:.3f} px, max {sm['max_px_lines']:.3f} px")
    if gsp_errors and any(e.get("cards_vs_table") is not None for e in gsp_errors):
        worst = max(e["cards_vs_table"] for e in gsp_errors if e.get("cards_vs_table") is not None)
        print(f"(goodman: GSP_C### cards and its WAVELENGTH column agree to {worst:.2e} Å)")
    results["wavelength_errors"] = {"ours": ours_errors, "goodman": gsp_errors}
    if res is None:
        print("!!! ours did not run: no figures for ours")
    if not a.skip_goodman and not gsp_errors:
        print("!!! no wavelength figures for goodman")

    out = os.path.join(base, "results.json")
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    print(f"\nfigures in {out}; work dir {base}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(summary(results), fh, indent=1, default=str)
        print(f"summary in {os.path.abspath(a.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
