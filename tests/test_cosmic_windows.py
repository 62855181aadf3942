"""Cosmic rays rejected in the rows a spectrum reads, against the simulator's truth.

A science spectrum no longer waits for the whole frame's cleaning:
`spectra.extract_targets(..., clean_windows=True)` runs L.A.Cosmic on the extraction
rows only (`cosmics.reject_in_rows`), and the whole frame is cleaned afterwards. These
tests hold that the spectrum loses nothing by it: the hits in the aperture are rejected,
real narrow lines (the target's, the sky's) are not, and the windows come out as they do
when the whole frame is cleaned.

Frames: two nights (seeds 3 and 4) of three 1200 s science frames each, so that ~3000
pixels per frame are hit (~20-60 of them in the target's aperture); reduced with
overscan + trim only (no bias, flat or slit trim), so reduced (row, col) is raw
(row - 1, col - 25) and the truth applies directly (as in tests/test_core_extract.py).
Each frame is also rendered without its hits (`render_frame(cosmic_rays=False)`: the
same noise), the spectrum a perfect rejection would give.
"""
from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
from scipy.ndimage import median_filter

from functions.core import cosmics, spectra
from functions.core.extract import extraction_rows
from functions.core.masters import camera_binning
from functions.core.reduce import DEFERRED, Calibrations, ReductionSettings, reduce_frame
from functions.core.spectra import extract_targets
from infra.simulator import geometry, make_night, render_frame
from infra.simulator.frames import expected_electrons, frame_spectra

SETTINGS = ReductionSettings(ignore_bias=True, ignore_flats=True)  # cosmic_ray_rejection: lacosmic
GAIN, RDNOISE = geometry.GAIN, geometry.RDNOISE
TRIM = (slice(1, geometry.SHAPE[0]), slice(geometry.FIRST_LIT_COL, geometry.LAST_LIT_COL + 1))
NIGHTS = ((3, 1200.0), (4, 1200.0))
#: A hit pixel counts as findable from this many sigma of its local noise (sky, target and
#: read noise): L.A.Cosmic flags where the Laplacian exceeds SIGCLIP (4.5) sigma, and a
#: streak along a row or a column has half the Laplacian of a point, so a streak pixel
#: needs ~9 sigma. Fainter pixels (faint streaks on the trace: 250 e- on 1700 e- of
#: starlight) are beyond L.A.Cosmic's reach; test_the_spectrum_is_freed_of_the_hits
#: shows what they leave in the spectrum.
FINDABLE_SIGMA = 10.0


def _reduce(raw, header):
    cam, binning = camera_binning(header)
    frame, report = reduce_frame(raw, header, "OBJECT", cam, binning, Calibrations(), SETTINGS, defer_cosmic=True)
    assert report["steps_skipped"]["cosmic"] == DEFERRED
    return frame


def _windows(spectra, shape):
    cols = np.arange(shape[1])
    return [extraction_rows(ts.trace, ts.target.fwhm, shape[0], shape[1], cols) for ts in spectra]


@contextlib.contextmanager
def _spy_on_reject_in_rows():
    """The (windows, mask) of every reject_in_rows call extract_targets makes."""
    calls = []

    def spy(data, windows, *args, **kwargs):
        out = real(data, windows, *args, **kwargs)
        calls.append((list(windows), out[1]))
        return out

    real = spectra.reject_in_rows
    spectra.reject_in_rows = spy
    try:
        yield calls
    finally:
        spectra.reject_in_rows = real


def _prepare(plan, fp, full: bool):
    raw, header = render_frame(plan, fp)
    frame = _reduce(raw, header)
    free = _reduce(render_frame(plan, fp, cosmic_rays=False)[0], header)
    e = np.zeros(fp.geometry.shape)
    e[np.array(fp.cosmic_rays.rows), np.array(fp.cosmic_rays.cols)] = fp.cosmic_rays.electrons
    out = {"plan": plan, "fp": fp, "frame": frame, "free": free, "e": e[TRIM],
           "sigma": np.sqrt(expected_electrons(plan, fp)[TRIM] + RDNOISE ** 2)}
    with _spy_on_reject_in_rows() as calls:
        out["window"] = extract_targets(frame.data, frame.mask, frame.header, SETTINGS, clean_windows=True)
    (out["windows"], out["crmask"]), = calls  # one call, with the rows the extractions read
    assert out["windows"] == _windows(out["window"][0], frame.data.shape)
    out["raw"] = extract_targets(frame.data, frame.mask, frame.header, SETTINGS)
    out["perfect"] = extract_targets(free.data, free.mask, free.header, SETTINGS)
    if full:
        # what the background task does next: the whole frame through L.A.Cosmic
        clean, crmask, _ = cosmics.reject_cosmic_rays(frame.data, GAIN, RDNOISE, mask=frame.mask)
        out.update(full_clean=clean, full_mask=crmask,
                   full=extract_targets(clean, crmask if frame.mask is None else frame.mask | crmask, frame.header,
                                        SETTINGS))
    return out


@pytest.fixture(scope="module")
def frames():
    out = []
    for seed, exptime in NIGHTS:
        plan = make_night(seed=seed, science_exptime=exptime, n_bias=0, n_flat=0, n_comp=0)
        for k, fp in enumerate(plan.frames):
            out.append(_prepare(plan, fp, full=(seed, k) == (NIGHTS[0][0], 0)))
    return out


def _in_aperture(f):
    """Truth hit pixels inside any target's extraction aperture: (rows, cols) arrays."""
    rr, cc = np.nonzero(f["e"])
    inside = np.zeros(rr.size, dtype=bool)
    for ts in f["window"][0]:
        inside |= np.abs(rr - ts.trace.center(cc)) <= ts.spectrum.aperture
    return rr[inside], cc[inside]


# ------------------------------------------------------------------ a. rejection where the spectrum needs it
def test_hits_in_the_aperture_are_rejected(frames):
    """Of the findable truth hit pixels (>= FINDABLE_SIGMA of the local noise) inside
    the target's aperture, >= 95 % are flagged by the window cleaning, i.e. left out of
    the extracted spectrum (measured 103/103; of the fainter ones 61/145). With the sky
    alone as L.A.Cosmic's background (before cosmics.lacosmic_background) it was 88/103:
    hits on the trace were taken for starlight."""
    found = total = faint = faint_found = 0
    for f in frames:
        rr, cc = _in_aperture(f)
        s = f["e"][rr, cc] / f["sigma"][rr, cc]
        flagged = f["crmask"][rr, cc]
        big = s >= FINDABLE_SIGMA
        found += int(np.count_nonzero(flagged & big))
        total += int(np.count_nonzero(big))
        faint += int(np.count_nonzero(~big))
        faint_found += int(np.count_nonzero(flagged & ~big))
        assert len(f["window"][0]) == 1 and f["crmask"].any()
    print(f"\naperture hits >= {FINDABLE_SIGMA:g} sigma: {found}/{total} flagged ({found / total:.3f}); "
          f"fainter: {faint_found}/{faint}")
    assert total >= 60  # enough hits in the apertures for the fraction to mean something
    assert found / total >= 0.95


def test_the_spectrum_is_freed_of_the_hits(frames):
    """The same seen in the spectrum: per column, what the hits add to the uncleaned
    spectrum (minus the hit-free rendering's spectrum) against what is left after the
    window cleaning. Over the columns where the hits add more than 5 sigma, <= 15 % of
    the excess is left (measured 7 %), and >= 85 % of those columns (measured 47/53) are
    within 3 sigma of the hit-free spectrum or rid of >= 80 % of their excess. The other
    columns hold faint streaks along the slit (250-400 e- a pixel, 4-8 sigma, over 4-6
    rows: below FINDABLE_SIGMA pixel by pixel, not in the sum) or a masked peak pixel
    whose profile correction overshoots by ~3 sigma."""
    before = after = 0.0
    good = n = 0
    for f in frames:
        win, raw, perfect = (f[k][0][0].spectrum for k in ("window", "raw", "perfect"))
        sig = np.sqrt(perfect.variance)
        added = raw.flux - perfect.flux
        left = win.flux - perfect.flux
        cols = np.flatnonzero(added > 5 * sig)
        before += float(np.abs(added[cols]).sum())
        after += float(np.abs(left[cols]).sum())
        ok = (np.abs(left[cols]) < 3 * sig[cols]) | (np.abs(left[cols]) < 0.2 * added[cols])
        good += int(ok.sum())
        n += cols.size
        # and where no hit falls, the cleaning leaves the spectrum alone
        quiet = np.abs(added) < 1e-6 * np.abs(perfect.flux)
        assert np.median(np.abs(win.flux - raw.flux)[quiet] / np.abs(raw.flux[quiet])) < 1e-6
    print(f"\ncolumns with hits > 5 sigma: {n}; excess left {after / before:.3f}; fixed columns {good}/{n}")
    assert n >= 20
    assert after / before <= 0.15
    assert good / n >= 0.85


def test_window_cleaned_spectrum_agrees_with_the_fully_cleaned_frame(frames):
    """The spectrum extracted at once (window cleaning) against the one the fully cleaned
    frame gives: the same to float noise nearly everywhere (the trace is found on the
    uncleaned frame: 1e-3 rows apart), and apart where hits fall in the aperture."""
    for f in (f for f in frames if "full" in f):
        win, full, raw = (f[k][0][0].spectrum for k in ("window", "full", "raw"))
        rel = np.abs(win.flux - full.flux) / np.abs(full.flux)
        print(f"\n{f['fp'].filename}: window vs full clean, median rel {np.nanmedian(rel):.1e}, "
              f"max {np.nanmax(rel):.1e}")
        assert np.nanmedian(rel) < 1e-4
        assert np.nanmax(rel) < 0.02
        assert np.isnan(win.flux).sum() == np.isnan(full.flux).sum()
        # the window mask is the full frame's mask in the extraction rows (test_reject_in_rows_...)
        for lo, hi in f["windows"]:
            assert np.array_equal(f["crmask"][lo:hi], f["full_mask"][lo:hi])
        # ... and it changed the spectrum where the hits fell
        sig = np.sqrt(win.variance)
        hit = (raw.flux - win.flux) > 5 * sig
        assert hit.sum() >= 3


# ------------------------------------------------------------------ b. real lines are not clipped
def _line_flux(spec, c, half=5, side=(15, 30)):
    """Flux of a line at column c over +-half columns, above the continuum (median of
    the columns side[0]..side[1] away on both sides)."""
    cont = np.median(np.r_[spec[c - side[1]:c - side[0]], spec[c + side[0]:c + side[1]]])
    return float(spec[c - half:c + half + 1].sum() - cont * (2 * half + 1))


@pytest.fixture(scope="module")
def emission_frame():
    """A 300 s frame of a target with a strong, narrow emission line: H-alpha turned
    from absorption into emission, 31 times the continuum at its centre (29 at the
    brightest column), sigma 1.5 A (0.76 binned columns), with the target's profile along
    the slit (2-3 rows FWHM): as compact as a hit, and below saturation. Rendered without
    cosmic rays, so anything flagged is a false detection."""
    plan = make_night(seed=3, n_bias=0, n_flat=0, n_comp=0, n_science=1)
    fp = plan.frames[0]
    fp = dataclasses.replace(fp, target=dataclasses.replace(fp.target, halpha_depth=-30.0, halpha_sigma=1.5))
    raw, header = render_frame(plan, fp, cosmic_rays=False)
    frame = _reduce(raw, header)
    return plan, fp, frame


def test_a_narrow_emission_line_is_not_taken_for_a_hit(emission_frame):
    plan, fp, frame = emission_frame
    _, source = frame_spectra(plan, fp)
    source = source[TRIM[1]]
    c = int(np.argmax(source))
    contrast = source[c] / np.median(np.r_[source[c - 30:c - 15], source[c + 15:c + 30]])
    assert contrast > 20 and float(np.asarray(frame.data).max()) < 0.9 * geometry.SATURATION  # strong, unsaturated
    with _spy_on_reject_in_rows() as calls:
        cleaned, _ = extract_targets(frame.data, frame.mask, frame.header, SETTINGS, clean_windows=True)
    plain, _ = extract_targets(frame.data, frame.mask, frame.header, SETTINGS)
    w, p = cleaned[0].spectrum, plain[0].spectrum
    lw, lp = _line_flux(w.flux, c), _line_flux(p.flux, c)
    noise = float(np.sqrt(w.variance[c - 5:c + 6].sum()))
    on_line = int(calls[0][1][:, c - 5:c + 6].sum())
    print(f"\nemission line at column {c}: contrast {contrast:.0f}, flux {lp:.0f} ADU (noise {noise:.0f}); "
          f"after window cleaning {lw:.0f}; pixels flagged on it {on_line} (in the windows {int(calls[0][1].sum())})")
    assert lp > 100 * noise
    assert abs(lw - lp) <= max(0.01 * lp, noise)
    assert on_line == 0


def test_a_bright_sky_line_is_not_taken_for_a_hit(frames):
    """The brightest night-sky line ([OI] 5577, ~16000 e- per pixel in 1200 s, 20 times
    its continuum), long along the slit: no pixel of it is flagged, and neither its sky
    level nor the target's flux under it changes with the window cleaning (on the
    hit-free rendering, where anything flagged is a false detection)."""
    f = frames[0]
    diffuse, _ = frame_spectra(f["plan"], f["fp"])
    diffuse = diffuse[TRIM[1]]
    c = int(np.argmax(diffuse))
    assert diffuse[c] > 10 * np.median(diffuse[c - 30:c - 15])
    free = f["free"]
    with _spy_on_reject_in_rows() as calls:
        cleaned, _ = extract_targets(free.data, free.mask, free.header, SETTINGS, clean_windows=True)
    w, p = cleaned[0].spectrum, f["perfect"][0][0].spectrum
    sky_w, sky_p = _line_flux(w.sky, c), _line_flux(p.sky, c)
    on_line = int(calls[0][1][:, c - 3:c + 4].sum())
    print(f"\nsky line at column {c}: {sky_p:.0f} ADU per row; after window cleaning {sky_w:.0f}; "
          f"pixels flagged on it {on_line}")
    assert abs(sky_w - sky_p) <= 0.01 * sky_p
    sl = slice(c - 5, c + 6)
    assert np.abs(w.flux[sl] - p.flux[sl]).sum() <= max(0.01 * np.abs(p.flux[sl]).sum(),
                                                       float(np.sqrt(p.variance[sl].sum())))
    assert on_line == 0


# ------------------------------------------------------------------ c. reject_in_rows itself
def test_reject_in_rows_is_the_whole_frame_cleaning_in_its_rows(frames):
    """Input unchanged; nothing flagged or changed outside the windows; inside them the
    mask and the cleaned values of reject_cosmic_rays on the whole frame, exactly
    (WINDOW_PAD rows of context reach farther than L.A.Cosmic's filters). Windows at
    both frame edges, two close ones (merged), one empty."""
    f = next(f for f in frames if "full" in f)
    data, mask = f["frame"].data, f["frame"].mask
    nrows = data.shape[0]
    before = data.copy()
    mask_before = None if mask is None else mask.copy()
    windows = [(0, 30), (300, 340), (350, 380), (600, 600), (nrows - 25, nrows + 10)]
    merged = cosmics.merged_windows(windows, nrows)
    assert merged == [(0, 30), (300, 380), (nrows - 25, nrows)]
    clean, crmask, desc = cosmics.reject_in_rows(data, windows, GAIN, RDNOISE, mask=mask)
    assert np.array_equal(data, before) and (mask is None or np.array_equal(mask, mask_before))
    assert desc.startswith("LACosmic")
    inside = np.zeros(nrows, dtype=bool)
    for lo, hi in merged:
        inside[lo:hi] = True
    assert not crmask[~inside].any()
    assert np.array_equal(clean[~inside], np.asarray(data, dtype=np.float32)[~inside])
    differ = int(np.count_nonzero(crmask[inside] != f["full_mask"][inside]))
    print(f"\nflagged in the windows {int(crmask.sum())}, whole-frame mask there {int(f['full_mask'][inside].sum())}, "
          f"pixels that differ {differ}")
    assert crmask[inside].sum() > 0
    assert differ == 0
    assert np.array_equal(clean[inside], f["full_clean"][inside])


def test_merged_windows_and_method_none():
    assert cosmics.merged_windows([(50, 60), (10, 20)], 100, pad=20) == [(10, 60)]  # contexts overlap: joined
    assert cosmics.merged_windows([(10, 20), (70, 80)], 100, pad=20) == [(10, 20), (70, 80)]
    assert cosmics.merged_windows([(-5, 3), (95, 130), (40, 40)], 100, pad=0) == [(0, 3), (95, 100)]
    data = np.random.default_rng(1).normal(100, 5, (60, 40)).astype(np.float32)
    clean, crmask, desc = cosmics.reject_in_rows(data, [(10, 20)], GAIN, RDNOISE, method="none")
    assert desc == "none" and not crmask.any() and np.array_equal(clean, data)
    with pytest.raises(ValueError):
        cosmics.reject_in_rows(data[0], [(0, 1)], GAIN, RDNOISE)


# ------------------------------------------------------------------ d. the backgrounds, exactly
@pytest.mark.parametrize("shape", [(300, 41), (64, 9), (65, 9), (26, 5), (25, 5), (24, 5), (13, 7), (2, 3), (1, 4)])
def test_sky_background_is_scipys_running_median(shape):
    rng = np.random.default_rng(sum(shape))
    data = rng.normal(100.0, 10.0, shape).astype(np.float32)
    data[rng.random(shape) < 0.05] += 5000.0  # hits
    data[:, 0] = 7.0  # ties
    expected = median_filter(data, size=(cosmics.BKG_ROWS, 1), mode="nearest")
    assert np.array_equal(cosmics.sky_background(data), expected)
    assert np.array_equal(cosmics.sky_background(data, chunk=7), expected)
    ints = rng.integers(0, 3000, shape).astype(np.uint16)
    assert np.array_equal(cosmics.sky_background(ints),
                          median_filter(ints.astype(np.float32), size=(cosmics.BKG_ROWS, 1), mode="nearest"))


@pytest.mark.parametrize("shape,binning", [((120, 300), 2), ((120, 300), 1), ((30, 24), 3), ((5, 3), 2)])
def test_lacosmic_background_is_sky_plus_a_running_median_along_the_dispersion(shape, binning):
    rng = np.random.default_rng(shape[0] + binning)
    data = rng.normal(100.0, 10.0, shape).astype(np.float32)
    data[rng.random(shape) < 0.02] += 3000.0
    before = data.copy()
    columns = cosmics.continuum_columns(binning)
    assert columns == {1: 51, 2: cosmics.CONTINUUM_COLUMNS, 3: 17}[binning]  # 50 unbinned pixels, odd
    sky = median_filter(data, size=(cosmics.BKG_ROWS, 1), mode="nearest")
    expected = sky + median_filter(data - sky, size=(1, columns), mode="nearest")
    assert np.allclose(cosmics.lacosmic_background(data, columns), expected, rtol=0, atol=1e-4)
    assert np.array_equal(data, before)


def test_cleaning_never_walks_the_loaded_libraries_again(monkeypatch):
    """threadpoolctl's library walk (dl_iterate_phdr) deadlocked two workers cleaning
    cosmic rays against a third importing an extension module: the walk is done once,
    at import, and a cleaning only uses that controller."""
    import threadpoolctl

    from functions.core import cosmics

    def walk_again(*args, **kwargs):
        raise AssertionError("a ThreadpoolController was built during a cleaning")

    monkeypatch.setattr(threadpoolctl, "ThreadpoolController", walk_again)
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", walk_again)
    rng = np.random.default_rng(3)
    frame = rng.normal(100.0, 5.0, (120, 300)).astype(np.float32)
    frame[60, 150] += 5000.0
    clean, mask = cosmics._lacosmic(frame, 1.4, 4.0, 2, None)
    assert mask[60, 150] and clean.shape == frame.shape
