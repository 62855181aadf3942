"""The simulated Goodman night: raw frames that look like the instrument's, and a truth that is exact.

Every prediction below is computed from truth.json alone (as the reduction tests will),
never from the simulator's internals, so these tests also check that the truth file says
enough, and says it right.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.modeling.models import Chebyshev1D

from functions.core import regions
from functions.core.reduce import Calibrations, ReductionSettings, reduce_frame
from infra.simulator import fits_bytes, geometry, make_night, render_frame, write_night
from infra.simulator.__main__ import main as cli_main
from infra.simulator.headers import build_header
from infra.simulator.truth import frame_truth

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (948, 2071)


@pytest.fixture(scope="session")
def night(tmp_path_factory):
    """The default 25-frame night, written the fast way (and timed)."""
    out = tmp_path_factory.mktemp("night")
    plan = make_night()
    t0 = time.perf_counter()
    paths = write_night(out, plan)
    elapsed = time.perf_counter() - t0
    truth = json.loads((out / "truth.json").read_text())
    return {"dir": out, "plan": plan, "paths": paths, "truth": truth, "elapsed": elapsed}


def frames_of(truth, kind):
    return [f for f in truth["frames"] if f["kind"] == kind]


def read(night, name):
    with fits.open(night["dir"] / name) as hdul:
        return hdul[0].data.astype(float), hdul[0].header


def wavelength(truth_frame, col, row=None):
    """lambda at raw column `col`, exactly as truth.json documents it (via astropy)."""
    sol = truth_frame["wavelength_solution"]
    x = 2.0 * (np.asarray(col, dtype=float) - 25) + 0.5 + sol["shift"]
    if row is not None:
        x = x + sol["tilt_px_per_100_rows"] * (row - sol["tilt_reference_row"]) / 100.0
    model = Chebyshev1D(degree=sol["degree"], **{f"c{i}": c for i, c in enumerate(sol["coefficients"])})
    return model(x)


def column_of(truth_frame, lam, row=None):
    """Fractional raw column where wavelength `lam` falls (inverse of `wavelength`)."""
    cols = np.arange(0.0, 2071.0, 0.25)
    return float(np.interp(lam, wavelength(truth_frame, cols, row), cols))


def centroid(profile, guess, half=3):
    k = int(round(guess))
    w = np.arange(k - half, k + half + 1)
    base = np.median(np.r_[profile[k - half - 8:k - half - 2], profile[k + half + 3:k + half + 9]])
    y = profile[w] - base
    return float((w * y).sum() / y.sum())


# ---------------------------------------------------------------- the night as files

def test_the_default_night_is_25_frames_named_and_ordered_like_the_instrument(night):
    names = [p.name for p in night["paths"]]
    assert len(names) == 25
    assert names[0] == "0001_zero.fits"
    assert names[10] == "0011_quartz_400M2_GG455.fits"
    assert names[20] == "0021_HgArNe_400M2_GG455.fits"
    assert names[22] == "0023_EG21_400M2_GG455.fits"
    assert [int(n[:4]) for n in names] == list(range(1, 26))
    kinds = [f["obstype"] for f in night["truth"]["frames"]]
    assert kinds.count("BIAS") == 10 and kinds.count("FLAT") == 10
    assert kinds.count("COMP") == 2 and kinds.count("OBJECT") == 3
    objects = [f["object"] for f in frames_of(night["truth"], "science")]
    assert sorted(objects.count(o) for o in set(objects)) == [1, 2]
    dates = [f["date_obs"] for f in night["truth"]["frames"]]
    assert dates == sorted(dates), "sequence numbers follow observation order"
    assert dates[0].startswith("2024-03-14T19:") and dates[19] < "2024-03-14T20:00"
    assert all(d >= "2024-03-15T00:30" for d in dates[20:])


def test_generating_the_night_takes_a_few_seconds(night):
    assert night["elapsed"] < 10.0, f"25 frames took {night['elapsed']:.1f} s"


def test_every_file_is_a_raw_uint16_frame_with_the_instrument_header(night):
    truth = night["truth"]
    for entry in truth["frames"]:
        with fits.open(night["dir"] / entry["name"]) as hdul:
            hdul.verify("exception")
            assert len(hdul) == 1
            h, data = hdul[0].header, hdul[0].data
            assert data.shape == SHAPE and data.dtype == np.uint16
            assert h["BITPIX"] == 16 and h["BZERO"] == 32768 and h["NAXIS1"] == 2071 and h["NAXIS2"] == 948
            leftovers = [k for k in h if re.match(r"(GSP_|APNUM|WAT|CRVAL|CDELT|CTYPE|LTM|WCSDIM|IRAF)", k)]
            assert not leftovers, f"{entry['name']} keeps reduction keywords {leftovers}"
            assert h["OBSTYPE"] == entry["obstype"] and h["OBJECT"] == entry["object"]
            assert h["EXPTIME"] == entry["exptime"] and h["DATE-OBS"] == entry["date_obs"]
            assert h["DATE"] == entry["date_obs"][:10] and h["UT"] == entry["date_obs"][11:]
            assert h["CCDSUM"] == "2 2" and h["ROI"] == "Spectroscopic 2x2" and h["INSTCONF"] == "Red"
            assert h["GAIN"] == 1.48 and h["RDNOISE"] == 3.89
            assert (h["GRATING"], h["WAVMODE"], h["FILTER2"]) == ("400_SYZY", "400_M2", "GG455")
            for key in ("SLIT", "CAM_ANG", "GRT_ANG", "CAM_TARG", "GRT_TARG", "TIME", "RA", "DEC", "OBSRA", "OBSDEC"):
                assert key in h
            lamps = {k: h[k] for k in ("LAMP_HGA", "LAMP_NE", "LAMP_AR", "LAMP_FE", "LAMP_CU", "LAMP_QUA")}
            on = {k for k, v in lamps.items() if v == "TRUE"}
            assert on == {"BIAS": set(), "FLAT": {"LAMP_QUA"}, "COMP": {"LAMP_HGA", "LAMP_NE"},
                          "OBJECT": set()}[entry["obstype"]]
            if entry["obstype"] == "OBJECT":
                assert h["OBSRA"] == entry["target"]["ra"] and h["OBSDEC"] == entry["target"]["dec"]
            assert f"Saved as: {entry['name']}" in str(h["COMMENT"])


def test_lamps_carry_the_coordinates_of_the_target_they_bracket(night):
    frames = night["truth"]["frames"]
    comps = [i for i, f in enumerate(frames) if f["kind"] == "comp"]
    first_sci = next(f for f in frames if f["kind"] == "science")
    last_sci = [f for f in frames if f["kind"] == "science"][-1]
    assert frames[comps[0]]["target"]["name"] == first_sci["object"]
    assert frames[comps[-1]]["target"]["name"] == last_sci["object"]


# ---------------------------------------------------------------- detector

def test_overscan_is_bias_level_and_read_noise(night):
    truth = night["truth"]
    geo = truth["geometry"]
    assert geo["overscan"] == "[3:24,1:948]" and geo["trim"] == "[26:2055,2:948]"
    biases = frames_of(truth, "bias")
    over = slice(2, 24)  # 1-based columns 3..24
    data = [read(night, f["name"])[0] for f in biases[:4]]
    for f, d in zip(biases, data):
        assert abs(d[:, over].mean() - f["bias_level_adu"]) < 1.0
    # the fixed bias structure cancels in a difference of two reads
    rn = np.std(data[0][:, over] - data[1][:, over]) / np.sqrt(2)
    assert rn == pytest.approx(geo["rdnoise_e"] / geo["gain"], rel=0.05)
    # the overscan of an exposed frame is just as dark
    sci = frames_of(truth, "science")[0]
    d, _ = read(night, sci["name"])
    assert abs(d[:, over].mean() - sci["bias_level_adu"]) < 1.0
    assert np.std(d[:, over]) < 1.3 * geo["rdnoise_adu"]


def test_light_falls_only_on_the_trim_columns_and_the_illuminated_rows(night):
    truth = night["truth"]
    flats = frames_of(truth, "flat")
    stack = np.mean([read(night, f["name"])[0] for f in flats[:5]], axis=0) - truth["geometry"]["bias_level_adu"]
    rows = np.median(stack[:, 500:1500], axis=1)
    level = np.median(rows[200:800])
    assert 15000 < level < 35000  # ADU above bias
    lit = np.flatnonzero(rows > 0.5 * level)
    assert (lit[0], lit[-1]) == tuple(truth["geometry"]["illuminated_rows"])
    assert rows[: lit[0] - 6].max() < 0.02 * level and rows[lit[-1] + 7:].max() < 0.02 * level
    cols = np.median(stack[200:800], axis=0)
    # only bias outside the trim (columns 1-2, 1-based, read warm as on the real camera)
    assert np.abs(cols[2:25]).max() < 5 and np.abs(cols[2055:]).max() < 5
    assert cols[25:2055].min() > 200
    assert stack.max() < 65535 - 1000


def test_flats_follow_the_recorded_spectrum(night):
    truth = night["truth"]
    f = frames_of(truth, "flat")[0]
    d, _ = read(night, f["name"])
    measured = np.median(d[450:550], axis=0) - f["bias_level_adu"]
    expected = np.array(f["spectrum"]["diffuse_electrons"]) / truth["geometry"]["gain"]  # illumination ~1 mid-slit
    cols = np.arange(100, 2000, 50)
    assert np.allclose(measured[cols], expected[cols], rtol=0.03)


# ---------------------------------------------------------------- wavelength truth

def isolated_bright_lines(truth, n=6):
    lines = truth["comparison_lamp"]["lines"]
    ident = sorted((l for l in lines if l["identified"]), key=lambda l: -l["electrons"])
    picked = []
    for l in ident:
        neighbours = [m for m in lines if m is not l and abs(m["x"] - l["x"]) < 14 and m["electrons"] > 0.005 * l["electrons"]]
        if not neighbours:
            picked.append(l)
        if len(picked) == n:
            break
    return picked


def test_comparison_lines_sit_where_the_truth_solution_puts_their_wavelengths(night):
    truth = night["truth"]
    lines = isolated_bright_lines(truth)
    assert len(lines) >= 5
    for comp in frames_of(truth, "comp"):
        d, _ = read(night, comp["name"])
        profile = d[300:700].mean(axis=0)
        for line in lines:
            predicted = column_of(comp, line["wavelength"])
            measured = centroid(profile, predicted)
            assert measured == pytest.approx(predicted, abs=0.05), (comp["name"], line["wavelength"])
        assert profile.max() - comp["bias_level_adu"] > 20000, "strong lines are strong"
        assert d.max() < 65535, "and not saturated"


def test_the_shift_moves_the_lines(night):
    a, b = frames_of(night["truth"], "comp")
    line = isolated_bright_lines(night["truth"], 1)[0]
    ca = centroid(read(night, a["name"])[0][300:700].mean(axis=0), column_of(a, line["wavelength"]))
    cb = centroid(read(night, b["name"])[0][300:700].mean(axis=0), column_of(b, line["wavelength"]))
    assert ca - cb == pytest.approx((b["shift"] - a["shift"]) / 2.0, abs=0.05)
    assert all(abs(f["shift"]) <= 3 for f in night["truth"]["frames"] if f["shift"] is not None)


def test_sky_lines_sit_at_their_wavelengths_in_science_frames(night):
    truth = night["truth"]
    sci = frames_of(truth, "science")[0]
    d, _ = read(night, sci["name"])
    profile = np.median(d[150:400], axis=0)  # far from the trace
    for lam in (5577.34, 6300.30, 8344.60):
        predicted = column_of(sci, lam)
        assert centroid(profile, predicted) == pytest.approx(predicted, abs=0.05), lam


def test_the_truth_mapping_reads_the_same_through_astropy_and_numpy(night):
    sol = night["truth"]["wavelength_solution"]
    x = np.array([0.5, 1000.5, 4058.5])
    via_numpy = np.polynomial.chebyshev.chebval(x, sol["coefficients"])
    via_astropy = Chebyshev1D(degree=sol["degree"], **{f"c{i}": c for i, c in enumerate(sol["coefficients"])})(x)
    assert np.allclose(via_numpy, via_astropy, atol=1e-9)
    assert 4900 < via_numpy[0] < 5000 and 8800 < via_numpy[-1] < 9100


# ---------------------------------------------------------------- science frames

def test_the_trace_is_where_the_truth_polynomial_says(night):
    for sci in frames_of(night["truth"], "science"):
        d, _ = read(night, sci["name"])
        d -= sci["bias_level_adu"]
        tr = sci["trace"]
        hit = np.zeros(SHAPE, bool)
        for r, c in sci["cosmic_rays"]:
            hit[r, c] = True
        for c0 in (150, 600, 1040, 1500, 1900):
            offsets = []
            for c in range(c0 - 12, c0 + 12):
                yc = tr["y0"] + tr["a"] * (c - tr["xc"]) + tr["b"] * (c - tr["xc"]) ** 2
                k = int(round(yc))
                w = np.arange(k - 7, k + 8)
                if hit[w, c].any():
                    continue
                col = d[:, c]
                sky = np.median(np.r_[col[k - 30:k - 12], col[k + 13:k + 31]])
                y = col[w] - sky
                offsets.append((w * y).sum() / y.sum() - yc)
            assert np.median(offsets) == pytest.approx(0.0, abs=0.2), (sci["name"], c0)
        # the trace curves by a few pixels across the detector
        rows = [tr["y0"] + tr["a"] * (c - tr["xc"]) + tr["b"] * (c - tr["xc"]) ** 2 for c in (25, 2054)]
        assert max(abs(r - tr["y0"]) for r in rows) > 2


def test_cosmic_rays_are_exactly_where_the_truth_lists_them(night):
    plan, truth = night["plan"], night["truth"]
    gain = truth["geometry"]["gain"]
    for entry in (frames_of(truth, "science")[0], frames_of(truth, "flat")[2]):
        frame = plan.frame(entry["name"])
        with_hits, _ = read(night, entry["name"])
        without, _ = render_frame(plan, frame, cosmic_rays=False)
        diff = with_hits - without.astype(float)
        listed = np.zeros(SHAPE, bool)
        deposit = np.zeros(SHAPE)
        for (r, c), e in zip(entry["cosmic_rays"], entry["cosmic_ray_electrons"]):
            listed[r, c] = True
            deposit[r, c] = e / gain
        assert listed.sum() == len(entry["cosmic_rays"]) > 0
        assert not diff[~listed].any(), "no charge outside the listed pixels"
        unsaturated = listed & (with_hits < 65535)
        assert np.all(np.abs(diff[unsaturated] - deposit[unsaturated]) <= 1.0)
    sci = frames_of(truth, "science")[0]
    assert 50 < sci["n_cosmic_ray_events"] < 400
    assert len(frames_of(truth, "bias")[0]["cosmic_rays"]) < 40


def test_cosmic_rays_stand_out_of_the_science_frame(night):
    sci = frames_of(night["truth"], "science")[1]
    d, _ = read(night, sci["name"])
    listed = {(r, c) for r, c in sci["cosmic_rays"]}
    strong = [(r, c) for (r, c), e in zip(sci["cosmic_rays"], sci["cosmic_ray_electrons"]) if e > 1000]
    standing = 0
    for r, c in strong:
        box = [(rr, cc) for rr in range(r - 2, r + 3) for cc in range(c - 2, c + 3)
               if (rr, cc) not in listed and 0 <= rr < SHAPE[0] and 0 <= cc < SHAPE[1]]
        local = np.median([d[p] for p in box])
        standing += d[r, c] - local > 300
    assert standing >= 0.95 * len(strong)


# ---------------------------------------------------------------- determinism

def test_same_seed_same_bytes_in_another_process_different_seed_different_bytes(night, tmp_path):
    args = ["--n-bias", "1", "--n-flat", "1", "--n-comp", "1", "--n-science", "1"]
    out = tmp_path / "cli"
    run = subprocess.run([sys.executable, "-m", "infra.simulator", "--out", str(out), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    names = ["0001_zero.fits", "0002_quartz_400M2_GG455.fits", "0003_HgArNe_400M2_GG455.fits",
             "0004_EG21_400M2_GG455.fits"]
    assert [line.split("\t")[0] for line in lines] == names
    plan = make_night(n_bias=1, n_flat=1, n_comp=1, n_science=1)
    other = make_night(seed=2, n_bias=1, n_flat=1, n_comp=1, n_science=1)
    for frame, frame2 in zip(plan.frames, other.frames):
        blob, _ = fits_bytes(*render_frame(plan, frame))
        assert (out / frame.filename).read_bytes() == blob, frame.filename
        blob2, _ = fits_bytes(*render_frame(other, frame2))
        assert blob2 != blob and len(blob2) == len(blob)
    # and the default night in this process matches a fresh plan, byte for byte
    fresh = make_night()
    for name in ("0003_zero.fits", "0021_HgArNe_400M2_GG455.fits"):
        blob, _ = fits_bytes(*render_frame(fresh, fresh.frame(name)))
        assert (night["dir"] / name).read_bytes() == blob
    truth2 = json.loads((out / "truth.json").read_text())
    trace = plan.frames[3].trace
    assert [truth2["frames"][3]["trace"][k] for k in ("y0", "a", "b", "xc", "fwhm")] == \
        [trace.y0, trace.a, trace.b, trace.xc, trace.fwhm]


# ---------------------------------------------------------------- writing like the instrument

def test_a_file_appears_grows_and_closes(tmp_path):
    plan = make_night(n_bias=2, n_flat=0, n_comp=0, n_science=0)
    closed = []
    seen = {}
    done = threading.Event()

    def on_close(path, when):
        closed.append((path.name, when, (tmp_path / "truth.json").is_file()))

    def writer():
        try:
            write_night(tmp_path, plan, cadence=1.2, write_seconds=0.8, chunks=8, on_close=on_close)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        for p in tmp_path.glob("*.fits"):
            seen.setdefault(p.name, set()).add(p.stat().st_size)
        time.sleep(0.01)
    thread.join()
    for name in ("0001_zero.fits", "0002_zero.fits"):
        blob, header_len = fits_bytes(*render_frame(plan, plan.frame(name)))
        assert (tmp_path / name).read_bytes() == blob
        partial = [s for s in seen[name] if s < len(blob)]
        assert len(partial) >= 3, f"{name} was never seen growing: {sorted(seen[name])}"
        assert all(s >= header_len or s == 0 for s in partial), "the header blocks come first, whole"
        with fits.open(tmp_path / name) as hdul:
            assert hdul[0].data.shape == SHAPE
    assert [n for n, _, _ in closed] == ["0001_zero.fits", "0002_zero.fits"]
    assert all(truth_first for _, _, truth_first in closed), "truth.json is written before the frames"
    assert closed[1][1] - closed[0][1] == pytest.approx(1.2, abs=0.35)
    assert json.loads((tmp_path / "truth.json").read_text())["n_frames"] == 2


# ---------------------------------------------------------------- options

def test_a_tilt_is_applied_and_recorded(tmp_path):
    plan = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=0, tilt=2.0)
    write_night(tmp_path, plan)
    truth = json.loads((tmp_path / "truth.json").read_text())
    comp = truth["frames"][0]
    assert comp["wavelength_solution"]["tilt_px_per_100_rows"] == 2.0
    d, _ = read({"dir": tmp_path}, comp["name"])
    line = isolated_bright_lines(truth, 1)[0]
    for r0 in (200, 800):
        profile = d[r0 - 5:r0 + 6].mean(axis=0)
        predicted = column_of(comp, line["wavelength"], row=r0)
        assert centroid(profile, predicted) == pytest.approx(predicted, abs=0.05)
    assert column_of(comp, line["wavelength"], 200) - column_of(comp, line["wavelength"], 800) == pytest.approx(6.0, abs=1e-3)


@pytest.mark.parametrize("lamp, reason", [
    ("600Red_GG495_HgArNe", "4060"),  # 3096 px wide: does not fill the 2x2 trim
    ("2100_3900A_NO_FILTER_ArHg", "Red"),  # a Blue-camera lamp
    ("no_such_lamp", "unknown reference lamp"),
])
def test_unsupported_reference_lamps_are_refused_clearly(lamp, reason):
    with pytest.raises(ValueError, match=reason):
        make_night(lamp=lamp)


def test_another_lamp_changes_the_setup_in_names_and_headers():
    plan = make_night(lamp="930M5_GG495_HgArNe", n_bias=0, n_flat=1, n_comp=1, n_science=0)
    assert [f.filename for f in plan.frames] == ["0001_quartz_930M5_GG495.fits", "0002_HgArNe_930M5_GG495.fits"]
    data, header = render_frame(plan, plan.frames[1])
    assert header["FILTER2"] == "GG495" and header["WAVMODE"].strip() == "930_M5"
    assert data.shape == SHAPE and 20000 < data.max() < 65535


# ---------------------------------------------------------------- per-frame setups: binning, ROI, slit, offset
#
# Nights like real ones: lamps and flats at another binning, window or slit than the
# science, lamps tens of pixels away from goodman-pipeline's reference lamps. Each frame's
# setup is in its header (CCDSUM, ROI, SLIT, NAXIS*, PG5_*) and in truth.json
# (frames[i].readout, and wavelength_solution.x_of_column for that frame's own columns).

#: sha256 of the default night as written before per-frame setups existed.
DEFAULT_NIGHT_SHA256 = {
    "truth.json": "20afd10ff799a4b1ca8deb9780fc425ded819077734f92d300c97f8e968031a1",
    "0001_zero.fits": "dee3c399f6df77f3d2cca3a9342bff17ed5c5f18ae62215188e29f28b763320d",
    "0011_quartz_400M2_GG455.fits": "24efdc20e35f61bf2a41ad07a7e238ed3d29c6c9c22d9c9d6cc6f02cbe99a66d",
    "0021_HgArNe_400M2_GG455.fits": "8c1bae6b6690cd5f4478d883b135a18f984f45217c04f4df1bc23b82cf5b3864",
    "0023_EG21_400M2_GG455.fits": "94121c0fc73fb7f17e6387d0cde33acc6a30196b2de96e5503100f50cad8e833",
    "0025_HgArNe_400M2_GG455.fits": "a3a620ef373c2188e55871c678e0dafe04370aa7fbc58dcc7dafff4aeb653131",
}


def test_the_default_night_is_unchanged_byte_for_byte(night):
    for name, digest in DEFAULT_NIGHT_SHA256.items():
        assert hashlib.sha256((night["dir"] / name).read_bytes()).hexdigest() == digest, name
    truth = night["truth"]
    assert truth["format"] == "goodman-night-simulator truth v1"
    sci = truth["frames"][22]
    assert (sci["name"], sci["shift"], sci["bias_level_adu"], len(sci["cosmic_rays"])) == \
        ("0023_EG21_400M2_GG455.fits", 1.1608, 998.52, 689)
    assert [sci["trace"][k] for k in ("y0", "a", "b", "xc", "fwhm")] == [470.2202, 0.0013547, 2.1167e-06, 1039.5, 2.92]
    assert all("readout" not in f for f in truth["frames"])
    d, h = read(night, sci["name"])
    assert (d[470, 1000], d[500, 1040], d[10, 10], int(d.sum())) == (2175, 1177, 1000, 2236598830)
    assert (h["PG5_4"], h["PG5_5"], h["PG5_6"], h["PG5_9"], h["PG5_10"], h["SLIT"]) == (2, 948, 1100, 2, 2071, "0.45_LONG_SLIT")


def x_of(entry, col, row=None):
    """Unbinned reference coordinate of raw column `col` of any frame, from its truth alone."""
    sol = entry["wavelength_solution"]
    scale, offset = sol.get("x_of_column", (2, -2 * 25 + 0.5 + sol["shift"]))
    x = scale * np.asarray(col, dtype=float) + offset
    if row is not None:
        x = x + sol["tilt_px_per_100_rows"] * (row - sol["tilt_reference_row"]) / 100.0
    return x


def wavelength_of(entry, col, row=None):
    sol = entry["wavelength_solution"]
    return np.polynomial.chebyshev.chebval(x_of(entry, col, row), sol["coefficients"])


def column_for(entry, lam, row=None):
    n = entry.get("readout", {"naxis1": SHAPE[1]})["naxis1"]
    cols = np.arange(0.0, n, 0.125)
    return float(np.interp(lam, wavelength_of(entry, cols, row), cols))


@pytest.mark.parametrize("binning", [(s, p) for s in (1, 2, 3) for p in (1, 2, 3)])
@pytest.mark.parametrize("roi", ["full", "Spectroscopic ZZ Ceti", (300, 600)])
def test_every_readout_fits_goodmans_regions(binning, roi):
    geom = geometry.Geometry(binning, geometry.roi_from(roi))
    sb, pb = binning
    assert geom.shape == (geom.roi.n_rows // pb, 4142 // sb)
    assert geom.overscan_section == regions.overscan_section("RED", binning, geom.shape)
    assert geom.trim_section == regions.trim_section("RED", binning, geom.shape)
    rows, cols = regions.parse_section(geom.trim_section)
    assert (cols.start, cols.stop - 1) == (geom.first_lit_col, geom.last_lit_col)
    assert geom.unbinned_width >= 4060, "the lit columns hold the whole reference lamp"
    # binned column c covers unbinned detector columns sb*c .. sb*c + sb - 1 at any binning
    # (the light falls on the same pixels); the reference's x = 0 is detector column 50
    c = geom.first_lit_col + 7
    assert geom.column_to_x(c) == sb * c + (sb - 1) / 2.0 - 50
    assert geom.x_to_column(geom.column_to_x(c, 3.25), 3.25) == pytest.approx(c)


def test_the_default_readout_is_the_2x2_constants():
    d = geometry.DEFAULT
    assert d.shape == geometry.SHAPE == SHAPE
    assert (d.overscan_section, d.trim_section) == (geometry.OVERSCAN_SECTION, geometry.TRIM_SECTION)
    assert (d.first_lit_col, d.n_lit_cols, d.illuminated_rows) == (25, 2030, (89, 904))
    assert d.tilt_reference_row == geometry.TILT_REFERENCE_ROW and d.roi_name == "Spectroscopic 2x2"
    assert geometry.Geometry(geometry.binning_from("1 2")).roi_name == "user-defined"


@pytest.mark.parametrize("binning", [(1, 1), (3, 3)])
def test_lamps_at_1x1_and_3x3_reduce_and_their_lines_sit_where_truth_says(binning):
    plan = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=0, binning=binning)
    frame = plan.frames[0]
    entry = frame_truth(plan, frame)
    data, header = render_frame(plan, frame)
    sb, pb = binning
    ro = entry["readout"]
    assert data.shape == (1896 // pb, 4142 // sb) == tuple(ro["shape"])
    assert (header["CCDSUM"], header["NAXIS1"], header["NAXIS2"]) == (f"{sb} {pb}", data.shape[1], data.shape[0])
    assert header["ROI"] == f"Spectroscopic {sb}x{pb}" and ro["binning"] == [sb, pb]
    reduced, report = reduce_frame(data, header, "COMP", "RED", binning, Calibrations(),
                                   ReductionSettings(cosmic_ray_rejection="none"))
    assert report["trim_section"] == ro["trim"] and report["overscan_region"] == ro["overscan"]
    assert reduced.data.shape == (data.shape[0] - 1, ro["n_lit_cols"])
    # lines: measured centroids against truth, for this frame's own binned columns
    lit = ro["illuminated_rows"]
    mid = (lit[0] + lit[1]) // 2
    profile = data[mid - 150 // pb:mid + 150 // pb].astype(float).mean(axis=0)
    lines = isolated_bright_lines(plan_truth(plan), 6)
    assert len(lines) >= 5
    for line in lines:
        predicted = column_for(entry, line["wavelength"])
        assert x_of(entry, predicted) == pytest.approx(line["x"], abs=1e-3)  # identified lines sit at solution^-1
        measured = centroid(profile, predicted, half=4 if sb == 1 else 2)
        assert measured == pytest.approx(predicted, abs=0.03), line["wavelength"]
    assert 20000 < data.max() < 65535


def plan_truth(plan):
    from infra.simulator import truth_dict
    return truth_dict(plan)


def test_a_lamp_offset_of_35_moves_the_lines_35_unbinned_px():
    base = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=1)
    off = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=1, lamp_offset=35)
    t0, t1 = plan_truth(base), plan_truth(off)
    for a, b in zip(t0["frames"], t1["frames"]):
        assert b["shift"] == pytest.approx(a["shift"] + 35, abs=1e-4)
        assert b["wavelength_solution"]["lamp_offset"] == 35 and b["wavelength_solution"]["flexure_shift"] == a["shift"]
    profile0 = render_frame(base, base.frames[0])[0][300:700].astype(float).mean(axis=0)
    profile1 = render_frame(off, off.frames[0])[0][300:700].astype(float).mean(axis=0)
    for line in isolated_bright_lines(t0, 6)[:4]:
        if not 300 < line["x"] < 3700:
            continue
        c0 = centroid(profile0, column_for(t0["frames"][0], line["wavelength"]))
        c1 = centroid(profile1, column_for(t1["frames"][0], line["wavelength"]))
        # x = 2*(c - 25) + 0.5 + shift: a larger shift puts a line at a smaller column
        assert 2.0 * (c0 - c1) == pytest.approx(35.0, abs=0.1), line["wavelength"]
    with pytest.raises(ValueError, match="lamp_offset"):
        make_night(lamp_offset=41)


@pytest.mark.parametrize("binning", [(2, 2), (3, 3)])
def test_an_roi_frame_has_its_rows_and_the_star_on_the_right_row(binning):
    full = make_night(n_bias=0, n_flat=0, n_comp=0, n_science=1, binning=binning)
    zz = make_night(n_bias=0, n_flat=0, n_comp=0, n_science=1, binning=binning, roi="Spectroscopic ZZ Ceti")
    sb, pb = binning
    f_full, f_zz = full.frames[0], zz.frames[0]
    entry = frame_truth(zz, f_zz)
    data, header = render_frame(zz, f_zz)
    assert data.shape == (400 // pb, 4142 // sb)
    assert (header["NAXIS2"], header["ROI"], header["PG5_5"], header["PG5_6"]) == \
        (400 // pb, "Spectroscopic ZZ Ceti", 400 // pb, 1800)
    ro = entry["readout"]
    assert (ro["roi_first_row_unbinned"], ro["roi_n_rows_unbinned"], ro["parallel_origin"]) == (700, 400, 1800)
    # the same star, 700 unbinned rows further down the window than in the full frame
    tr = entry["trace"]
    assert tr["y0"] == pytest.approx(f_full.trace.y0 - 700 / pb, abs=1e-5)
    d = data.astype(float) - entry["bias_level_adu"]
    hit = np.zeros(data.shape, bool)
    for r, c in entry["cosmic_rays"]:
        hit[r, c] = True
    half = int(np.ceil(3 * tr["fwhm"])) + 1
    lit = (ro["first_lit_col"], ro["first_lit_col"] + ro["n_lit_cols"])
    offsets = []
    for c in np.linspace(lit[0] + 100, lit[1] - 100, 40).astype(int):
        yc = tr["y0"] + tr["a"] * (c - tr["xc"]) + tr["b"] * (c - tr["xc"]) ** 2
        k = int(round(yc))
        w = np.arange(k - half, k + half + 1)
        if hit[w, c].any():
            continue
        col = d[:, c]
        sky = np.median(np.r_[col[k - 4 * half:k - 2 * half], col[k + 2 * half:k + 4 * half]])
        y = col[w] - sky
        offsets.append((w * y).sum() / y.sum() - yc)
    assert len(offsets) > 20 and np.median(offsets) == pytest.approx(0.0, abs=0.2)


def test_each_frame_has_its_own_setup_in_header_and_truth():
    plan = make_night(n_bias=1, n_flat=1, n_comp=1, n_science=1, binning=(2, 2), roi="Spectroscopic ZZ Ceti",
                      slit=1.0, lamp_binning=(1, 1), lamp_roi="full", lamp_slit=0.45, flat_slit=2.0)
    truth = plan_truth(plan)
    assert truth["format"] == "goodman-night-simulator truth v2"
    kinds = [(f["kind"], tuple(f["readout"]["binning"]), f["readout"]["roi"]) for f in truth["frames"]]
    # one bias set per readout used: the science (and flat) window, the lamps' full 1x1
    assert kinds == [("bias", (2, 2), "Spectroscopic ZZ Ceti"), ("bias", (1, 1), "Spectroscopic 1x1"),
                     ("flat", (2, 2), "Spectroscopic ZZ Ceti"), ("comp", (1, 1), "Spectroscopic 1x1"),
                     ("science", (2, 2), "Spectroscopic ZZ Ceti")]
    slits = {"bias": '0.45_LONG_SLIT', "flat": '2.0" long slit', "comp": '0.45" long slit', "science": '1.0" long slit'}
    for f, entry in zip(plan.frames, truth["frames"]):
        h = build_header(plan, f)
        ro = entry["readout"]
        assert h["CCDSUM"] == ro["ccdsum"] and h["ROI"] == ro["roi"] and h["SLIT"] == ro["slit_card"] == slits[f.kind]
        assert (h["NAXIS2"], h["NAXIS1"]) == tuple(ro["shape"]) and h["PG5_6"] == ro["parallel_origin"]
        assert h["TRIMSEC"] == f"[1:{ro['binning'][0] * ro['naxis1']},1:{ro['binning'][1] * ro['naxis2']}]"
        if entry["wavelength_solution"]:
            sol = entry["wavelength_solution"]
            sb = ro["binning"][0]
            assert sol["x_of_column"][0] == sb
            assert sol["x_of_column"][1] == pytest.approx(-sb * ro["first_lit_col"] + (sb - 1) / 2 + sol["shift"])
            assert len(entry["spectrum"]["diffuse_electrons"]) == ro["naxis1"]
    # the observer keeps the levels: a 2" flat is exposed 0.45/2 as long, a 1x1 lamp 4x as long
    flat, comp = plan.frames[2], plan.frames[3]
    assert flat.exptime == pytest.approx(20.0 * 0.45 / 2.0, abs=0.05) and comp.exptime == 8.0


def test_a_wider_slit_widens_the_lines():
    narrow = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=0, lamp_slit=0.45)
    wide = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=0, lamp_slit=1.0)
    line = isolated_bright_lines(plan_truth(narrow), 1)[0]
    widths = []
    for plan in (narrow, wide):
        entry = frame_truth(plan, plan.frames[0])
        profile = render_frame(plan, plan.frames[0])[0][300:700].astype(float).mean(axis=0)
        k = int(round(column_for(entry, line["wavelength"])))
        w = np.arange(k - 6, k + 7)
        y = profile[w] - np.median(np.r_[profile[k - 16:k - 8], profile[k + 9:k + 17]])
        m = (w * y).sum() / y.sum()
        var = ((w - m) ** 2 * y).sum() / y.sum()
        sigma_unbinned = 2.0 * np.sqrt(var - 1.0 / 12.0)  # binned px -> unbinned, minus the pixel's width
        widths.append(sigma_unbinned)
        assert sigma_unbinned == pytest.approx(entry["readout"]["line_sigma_unbinned"], rel=0.12)
    assert widths[1] / widths[0] == pytest.approx(1.0 / 0.45, rel=0.12)


def test_nights_without_lamps_and_a_second_night_from_the_command_line(tmp_path):
    assert not [f for f in make_night(n_comp=0, n_bias=1, n_flat=1).frames if f.kind == "comp"]
    out = tmp_path / "n2"
    assert cli_main(["--out", str(out), "--night", "2024-03-15", "--seed", "2", "--n-bias", "1", "--n-flat", "0",
                     "--n-comp", "1", "--n-science", "0", "--binning", "3 3", "--lamp-offset", "-20",
                     "--roi", "700:400"]) == 0
    truth = json.loads((out / "truth.json").read_text())
    assert truth["night"] == "2024-03-15" and truth["frames"][0]["date_obs"].startswith("2024-03-15T19:")
    comp = truth["frames"][1]
    assert comp["readout"]["roi"] == "user-defined" and comp["readout"]["shape"] == [133, 1380]
    assert comp["wavelength_solution"]["lamp_offset"] == -20
    with fits.open(out / comp["name"]) as hdul:
        assert hdul[0].data.shape == (133, 1380) and hdul[0].header["CCDSUM"] == "3 3"


def test_a_tilt_is_the_same_on_the_sky_in_another_readout():
    plan = make_night(n_bias=0, n_flat=0, n_comp=1, n_science=0, tilt=2.0, binning=(3, 3))
    entry = frame_truth(plan, plan.frames[0])
    sol = entry["wavelength_solution"]
    # 2 unbinned px per 100 rows of 2x2 (200 unbinned rows) = 3 px per 100 rows of 3x3
    assert sol["tilt_px_per_100_rows"] == 3.0 and sol["tilt_reference_row"] == pytest.approx((993.5 - 1) / 3)
    d, _ = render_frame(plan, plan.frames[0])
    line = isolated_bright_lines(plan_truth(plan), 1)[0]
    for r0 in (120, 520):
        predicted = column_for(entry, line["wavelength"], row=r0)
        assert centroid(d[r0 - 4:r0 + 5].astype(float).mean(axis=0), predicted, half=2) == \
            pytest.approx(predicted, abs=0.03)


def test_explicit_bias_binnings_follow_the_windows_read_at_them():
    plan = make_night(n_bias=1, n_flat=0, n_comp=1, n_science=1, binning=(2, 2), roi="Spectroscopic ZZ Ceti",
                      lamp_binning=(1, 1), lamp_roi="full", bias_binning=["1 1", (3, 3)])
    biases = [(f.geometry.binning, f.geometry.roi_name) for f in plan.frames if f.kind == "bias"]
    assert biases == [((1, 1), "Spectroscopic 1x1"), ((3, 3), "Spectroscopic ZZ Ceti")]


def test_a_window_sees_the_same_light_and_pixels_as_the_full_frame():
    from infra.simulator.frames import expected_electrons

    full = make_night(n_bias=0, n_flat=1, n_comp=0, n_science=0)
    zz = make_night(n_bias=0, n_flat=1, n_comp=0, n_science=0, roi="Spectroscopic ZZ Ceti")
    a = expected_electrons(full, full.frames[0])
    b = expected_electrons(zz, zz.frames[0])
    assert b.shape == (200, 2071)
    assert np.allclose(b, a[350:550], rtol=1e-12, atol=0)  # 700 unbinned rows = 350 rows at 2x2
