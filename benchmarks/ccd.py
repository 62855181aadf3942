"""Benchmark: our reduction core vs goodman-pipeline's redccd on the default simulated night.

    .venv/bin/python benchmarks/ccd.py [--keep DIR] [--skip-goodman]

Writes the seed-1 night (25 frames) to a temp dir, then
(a) ours, in a subprocess (so peak RSS is ours alone): master bias, master flat, then
    every COMP/OBJECT frame with reduce_frame (CPU = time.process_time, wall, peak RSS
    from resource.getrusage; the raw files are read with astropy outside the timed steps
    but inside the subprocess's totals);
(b) goodman-pipeline's redccd (ReduceCCD with --cosmic lacosmic) in a subprocess with a
    temp cwd, without its setup_logging (which calls the network): wall, CPU of the
    child (RUSAGE_CHILDREN), peak RSS.
Then compares our cfzst_ frames with goodman's files of the same name where both exist.
Prints a table; always exits 0.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def read_raw(raw_dir: str):
    """Every raw frame of the folder as (name, uint16 data, header), grouped by OBSTYPE,
    and the CPU seconds the reading took."""
    import numpy as np
    from astropy.io import fits

    t = time.process_time()
    by = {}
    for f in sorted(glob.glob(os.path.join(raw_dir, "*.fits"))):
        with fits.open(f) as hdul:
            d, h = hdul[0].data.astype(np.uint16), hdul[0].header.copy()
        by.setdefault(str(h["OBSTYPE"]).strip(), []).append((os.path.basename(f), d, h))
    return by, time.process_time() - t


def build_masters(by):
    """Master bias and flat of the night with functions.core: (Calibrations, timings)."""
    sys.path.insert(0, ROOT)
    from functions.core import masters
    from functions.core import reduce as R

    timings = {}
    t, w = time.process_time(), time.perf_counter()
    mb = masters.make_master_bias([(d, h) for _, d, h in by["BIAS"]], names=[n for n, _, _ in by["BIAS"]])
    timings["master_bias"] = {"cpu": time.process_time() - t, "wall": time.perf_counter() - w}
    t, w = time.process_time(), time.perf_counter()
    mf, slit = masters.make_master_flat([(d, h) for _, d, h in by["FLAT"]], mb, names=[n for n, _, _ in by["FLAT"]])
    timings["master_flat"] = {"cpu": time.process_time() - t, "wall": time.perf_counter() - w, "slit": slit}
    return R.Calibrations(mb, "master_bias.fits", mf, "norm_master_flat.fits", slit), timings


def ours(raw_dir: str, out_json: str, out_dir: str) -> None:
    """Run in a subprocess: reduce the night with functions.core, write timings as JSON."""
    sys.path.insert(0, ROOT)
    from astropy.io import fits

    from functions.core import reduce as R

    t_all, w_all = time.process_time(), time.perf_counter()
    by, read_cpu = read_raw(raw_dir)
    res = {"read_cpu": read_cpu, "frames": []}
    cal, timings = build_masters(by)
    res.update(timings)
    settings = R.ReductionSettings()
    for kind in ("COMP", "OBJECT"):
        for name, d, h in by.get(kind, []):
            t, w = time.process_time(), time.perf_counter()
            frame, rep = R.reduce_frame(d, h, kind, "RED", (2, 2), cal, settings)
            cpu, wall = time.process_time() - t, time.perf_counter() - w
            out = os.path.join(out_dir, rep["prefix"] + name)
            fits.PrimaryHDU(frame.data, frame.header).writeto(out, overwrite=True)
            res["frames"].append({"name": name, "obstype": kind, "prefix": rep["prefix"], "cpu": cpu, "wall": wall,
                                  "steps": rep["timings"], "cosmic_pixels": rep["cosmic_pixels"]})
    res["total_cpu"] = time.process_time() - t_all
    res["total_wall"] = time.perf_counter() - w_all
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open(out_json, "w") as fh:
        json.dump(res, fh, indent=1)


def run_child(cmd, cwd, timeout=1800):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - w
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, wall, cpu, after.ru_maxrss / 1024.0


GOODMAN = ("import sys\n"
           "from goodman_pipeline.images.goodman_ccd import ReduceCCD, get_args\n"
           "ReduceCCD()(get_args(['--raw-path', sys.argv[1], '--red-path', sys.argv[2], '--cosmic', 'lacosmic']))\n")


def bench_args(argv=None) -> argparse.Namespace:
    """The benchmarks' command line: --keep DIR, --skip-goodman, and the child's hidden --_ours."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="work in this directory instead of a temp dir")
    ap.add_argument("--skip-goodman", action="store_true")
    ap.add_argument("--_ours", nargs=3, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> int:
    a = bench_args()
    if a._ours:
        ours(*a._ours)
        return 0
    sys.path.insert(0, ROOT)
    from infra.simulator import make_night, write_night

    base = a.keep or tempfile.mkdtemp(prefix="bench_ccd_")
    raw, red_ours, red_gsp, cwd = (os.path.join(base, d) for d in ("raw", "red_ours", "red_goodman", "cwd"))
    for d in (red_ours, red_gsp, cwd):
        os.makedirs(d, exist_ok=True)
    t = time.perf_counter()
    write_night(raw, make_night(seed=1))
    print(f"simulated night written to {raw} in {time.perf_counter() - t:.1f} s")

    js = os.path.join(base, "ours.json")
    proc, o_wall, o_cpu, o_rss = run_child([PY, os.path.abspath(__file__), "--_ours", raw, js, red_ours], cwd=cwd)
    if proc.returncode != 0:
        print("ours failed:\n", proc.stderr[-3000:])
        return 0
    res = json.load(open(js))
    print("\n== ours (functions/core) ==")
    print(f"{'step':<34}{'CPU s':>9}{'wall s':>9}")
    print(f"{'read 25 FITS (astropy)':<34}{res['read_cpu']:>9.3f}{'':>9}")
    print(f"{'master bias (10)':<34}{res['master_bias']['cpu']:>9.3f}{res['master_bias']['wall']:>9.3f}")
    print(f"{'master flat (10) ' + res['master_flat']['slit']:<34}{res['master_flat']['cpu']:>9.3f}"
          f"{res['master_flat']['wall']:>9.3f}")
    for f in res["frames"]:
        label = f"{f['prefix']}{f['name'][:22]}"
        print(f"{label:<34}{f['cpu']:>9.3f}{f['wall']:>9.3f}   cosmic {f['steps'].get('cosmic', 0):.2f} s CPU")
    print(f"{'total (process)':<34}{res['total_cpu']:>9.3f}{res['total_wall']:>9.3f}   peak RSS {res['peak_rss_mb']:.0f} MB")
    print(f"{'subprocess (incl. imports)':<34}{o_cpu:>9.3f}{o_wall:>9.3f}   peak RSS {o_rss:.0f} MB")

    if a.skip_goodman:
        return 0
    try:
        import importlib.util

        if importlib.util.find_spec("goodman_pipeline") is None:
            print("\ngoodman_pipeline not installed: skipping its run")
            return 0
    except Exception:  # pragma: no cover
        return 0
    try:
        proc, g_wall, g_cpu, g_rss = run_child([PY, "-c", GOODMAN, raw, red_gsp], cwd=cwd)
    except subprocess.TimeoutExpired:
        print("\ngoodman redccd timed out")
        return 0
    produced = sorted(os.path.basename(p) for p in glob.glob(os.path.join(red_gsp, "*.fits")))
    print("\n== goodman-pipeline redccd --cosmic lacosmic ==")
    print(f"exit {proc.returncode}; {len(produced)} files: {', '.join(produced[:12])}{' ...' if len(produced) > 12 else ''}")
    if proc.returncode != 0:
        print(proc.stderr[-2000:])
    print(f"{'':<34}{'CPU s':>9}{'wall s':>9}{'peak RSS MB':>13}")
    print(f"{'ours (subprocess)':<34}{o_cpu:>9.2f}{o_wall:>9.2f}{o_rss:>13.0f}")
    print(f"{'goodman redccd (subprocess)':<34}{g_cpu:>9.2f}{g_wall:>9.2f}{g_rss:>13.0f}")
    print(f"{'ratio goodman/ours':<34}{g_cpu / max(o_cpu, 1e-9):>9.1f}{g_wall / max(o_wall, 1e-9):>9.1f}")
    print("(peak RSS of goodman is the max over all children of this benchmark, ours included)")

    # pixel comparison of our reduced frames with goodman's of the same name
    import numpy as np
    from astropy.io import fits

    print("\n== pixels: ours vs goodman (same file name) ==")
    for f in res["frames"]:
        name = f["prefix"] + f["name"]
        theirs_path = os.path.join(red_gsp, name)
        if not os.path.exists(theirs_path):
            print(f"{name}: no goodman file")
            continue
        o = fits.getdata(os.path.join(red_ours, name)).astype(np.float64)
        g = fits.getdata(theirs_path).astype(np.float64)
        if o.shape != g.shape:
            print(f"{name}: shapes differ ours {o.shape} goodman {g.shape}")
            continue
        d = o - g
        med = np.median(d)
        print(f"{name}: median diff {med:+.3f} ADU (per-read bias offset: goodman has no overscan step), "
              f"rms about it {np.std(d - med):.3f}, 99.9th pct |diff - median| {np.percentile(np.abs(d - med), 99.9):.2f}")
    print(f"\nwork dir: {base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
