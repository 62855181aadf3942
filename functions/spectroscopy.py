"""Spectra as the frames arrive: extracted right after a science frame's 2-D reduction,
wavelength-calibrated as soon as a comparison lamp of its configuration is reduced.

The two halves are separate on purpose. Extraction needs the cleaned 2-D frame and
its cosmic-ray mask, which only exist in the worker that reduced it; calibration needs
only the extracted spectra (small `ecfzst_` products), the traces (in the index) and
the lamp. So a lamp that arrives after its science frames costs each of them a
fraction of a second, not a second 2-D reduction with cosmic-ray cleaning.

Which lamp: the reduced lamp of the same night and configuration nearest in time
(`calibrations.choose_lamp`). A nearer lamp reduced later replaces it; a science
frame with no lamp yet says so in `waiting_for` and `wavelength_error`.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from functions.api.chalicelib.index import STATUS_FAILED, STATUS_REDUCED, STATUS_UNSUPPORTED, iter_all_files
from functions.core.calibrations import choose_lamp
from functions.core.plot import spectrum_png
from functions.core.spectra import (calibrate_target, calibrated_fits, central_lamp_spectrum, extract_targets,
                                    extracted_fits, lamp_spectrum, solve_target, trace_from_summary)
from functions.products import put_file_product, read_fits, read_fits_hdus, stem_of
from functions.services import send_task

log = logging.getLogger("goodman_live.spectra")

LAMP_WAIT = "comparison_lamp"
QUICKLOOK_SPECTRUM = "quicklook_spectrum"
#: Product kinds made by the calibration: replaced whenever a frame is calibrated again.
CALIBRATED_KINDS = ("calibrated", "spectrum_plot", "lamp_calibrated", "lamp_plot")

#: Reduced lamps a warm worker keeps (a night has a handful; several science frames
#: use each one).
_lamp_cache: Dict[Tuple[str, str], Tuple[np.ndarray, Any]] = {}
_LAMP_CACHE_SIZE = 4

#: per target number: flux, variance, header, sky
Extracted = Dict[int, Tuple[np.ndarray, Optional[np.ndarray], Any, Optional[np.ndarray]]]


# ---- extraction (in the worker that reduced the frame) ---------------------------
def extract(item: Dict[str, Any], frame, prefix: str, services, settings) -> Tuple[Dict[str, Any], List[Dict], Extracted]:
    """`ecfzst_` products of every target on a reduced science frame.

    Returns the index fields (target summaries with their traces, notes), the product
    entries, and the spectra in memory for the calibration that follows at once."""
    try:
        spectra, notes = extract_targets(frame.data, frame.mask, frame.header, settings)
    except ValueError as exc:  # a frame the target finder cannot read (all masked, too small)
        spectra, notes = [], [f"targets not searched: {exc}"]
    products, summaries, extracted = [], [], {}
    stem = stem_of(item["file_name"])
    for ts in spectra:
        name = f"e{prefix}{stem}_target_{ts.number}.fits"
        products.append(put_file_product(services, item, name, "extracted", extracted_fits(ts, frame.header),
                                         "application/fits"))
        summaries.append({**ts.summary(), "file_name": name})
        extracted[ts.number] = (ts.spectrum.flux, ts.spectrum.variance, frame.header, ts.spectrum.sky)
    fields = {"spectra": summaries, "spectra_notes": notes, "spectra_shape": list(frame.data.shape)}
    return fields, products, extracted


def quicklook_spectra(item: Dict[str, Any], quick, services, settings) -> List[Dict[str, Any]]:
    """Plots of each target's calibrated spectrum from the frame before cosmic-ray
    cleaning: the observer sees the spectrum about 1.7 s after the file closes, seconds
    before the clean products (a cosmic ray may show as a spike until then). Nothing
    when there is no lamp yet or anything fails: the clean products say why."""
    from functions.core.wavelength import WavelengthFailure

    lamp, _ = find_lamp(item, services)
    if lamp is None:
        return []
    lamp_data, lamp_header = _load_lamp(lamp, services)
    if lamp_data.shape != quick.data.shape:
        return []
    try:
        spectra, _ = extract_targets(quick.data, quick.mask, quick.header, settings)
    except ValueError:
        return []
    products, stem = [], stem_of(item["file_name"])
    for ts in spectra:
        lamp_flux = lamp_spectrum(lamp_data, ts.trace, ts.spectrum.aperture)
        try:
            _, _, solution = solve_target(quick.header, ts.spectrum.sky, lamp_flux, lamp_header, settings)
        except WavelengthFailure:  # the clean products will say why
            continue
        good = np.isfinite(ts.spectrum.flux)  # a plot needs no resampling: flux at each column's wavelength
        title = (f"QUICKLOOK {item.get('object') or stem}  target {ts.number}  ({item['file_name']}, "
                 f"lamp {lamp['file_name']}; cosmic rays not yet cleaned)")
        plot = spectrum_png(solution.wavelength(np.flatnonzero(good)), ts.spectrum.flux[good], title)
        products.append(put_file_product(services, item, f"{stem}_target_{ts.number}_quicklook_spectrum.png",
                                         QUICKLOOK_SPECTRUM, plot, "image/png"))
    return products


# ---- calibration ------------------------------------------------------------------
def _lamp_ref(lamp: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """What a calibration depends on: the lamp and the calibrations of its reduction."""
    if lamp is None:
        return None
    reduced = _reduced_product(lamp)
    return {"file_id": lamp["file_id"], "file_name": lamp["file_name"], "date_obs": lamp.get("date_obs"),
            "reduced_key": reduced["key"] if reduced else None, "calibrations": lamp.get("calibrations")}


def _reduced_product(item: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return next((p for p in item.get("products", []) if p.get("kind") == "reduced"), None)


def _same_setup(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    return a.get("night") == b.get("night") and a.get("configuration") == b.get("configuration")


def find_lamp(item: Dict[str, Any], services) -> Tuple[Optional[Dict[str, Any]], int]:
    """(lamp to use, number of lamps of this setup still on their way)."""
    lamps = [f for f in iter_all_files(services.index, item["night"], "COMP") if _same_setup(f, item)]
    ready = [f for f in lamps if f.get("status") == STATUS_REDUCED and _reduced_product(f)]
    pending = sum(1 for f in lamps if f.get("status") not in (STATUS_REDUCED, STATUS_FAILED, STATUS_UNSUPPORTED))
    return choose_lamp(ready, item.get("date_obs")), pending


def _load_lamp(lamp: Dict[str, Any], services):
    product = _reduced_product(lamp)
    cache_key = (product["key"], repr(lamp.get("calibrations")))
    if cache_key not in _lamp_cache:
        if len(_lamp_cache) >= _LAMP_CACHE_SIZE:
            _lamp_cache.pop(next(iter(_lamp_cache)))
        data, header = read_fits(services.s3, product["bucket"], product["key"])
        _lamp_cache[cache_key] = (np.asarray(data, dtype=float), header)
    return _lamp_cache[cache_key]


def _read_extracted(item: Dict[str, Any], services) -> Extracted:
    out: Extracted = {}
    by_name = {p["file_name"]: p for p in item.get("products", []) if p.get("kind") == "extracted"}
    for s in item.get("spectra") or []:
        p = by_name.get(s.get("file_name"))
        if p is None:
            continue
        hdus = read_fits_hdus(services.s3, p["bucket"], p["key"])
        named = {h.get("EXTNAME"): d for d, h in hdus[1:]}
        out[s["number"]] = (np.asarray(hdus[0][0], dtype=float), named.get("VAR"), hdus[0][1], named.get("SKY"))
    return out


def _waiting(item: Dict[str, Any], lamp_missing: bool) -> List[str]:
    waiting = [w for w in item.get("waiting_for") or [] if w != LAMP_WAIT]
    return waiting + [LAMP_WAIT] if lamp_missing else waiting


def _no_lamp_reason(item: Dict[str, Any], pending: int) -> str:
    if pending:
        return f"waiting for {pending} comparison lamp(s) of this configuration still being reduced"
    return (f"no comparison lamp of configuration {item.get('configuration')} on night {item['night']} yet: "
            "the spectrum is calibrated as soon as one arrives")


def calibrate(item: Dict[str, Any], services, config, extracted: Optional[Extracted] = None) -> None:
    """Wavelength-calibrate every extracted spectrum of a science frame.

    Idempotent: nothing is done when the frame was already calibrated with this very
    lamp (same lamp, same reduction of it), unless fresh spectra are handed in."""
    spectra = [dict(s) for s in item.get("spectra") or []]
    if not spectra:
        return
    lamp, pending = find_lamp(item, services)
    ref = _lamp_ref(lamp)
    if extracted is None and item.get("lamp") == ref and ref is not None:
        return
    kept = [p for p in item.get("products", []) if p.get("kind") not in CALIBRATED_KINDS]
    if lamp is None:
        reason = _no_lamp_reason(item, pending)
        for s in spectra:
            s.update(wavelength=None, wavelength_error=reason)
        services.index.update_file(item["file_id"], {"spectra": spectra, "products": kept, "lamp": None,
                                                     "waiting_for": _waiting(item, True)})
        return
    lamp_data, lamp_header = _load_lamp(lamp, services)
    extracted = extracted if extracted is not None else _read_extracted(item, services)
    new: List[Dict[str, Any]] = []
    for s in spectra:
        s.update(_calibrate_one(item, s, lamp, lamp_data, lamp_header, extracted, services, config, new))
    services.index.update_file(item["file_id"], {"spectra": spectra, "products": kept + new, "lamp": ref,
                                                 "waiting_for": _waiting(item, False)})
    log.info("calibrated %s with %s: %s", item["file_name"], lamp["file_name"],
             ", ".join(f"#{s['number']} " + (f"rms {s['wavelength']['rms_pixels']:.3f} px" if s.get("wavelength")
                                              else f"failed ({s.get('wavelength_error')})") for s in spectra))


def _calibrate_one(item, s, lamp, lamp_data, lamp_header, extracted, services, config, new) -> Dict[str, Any]:
    shape = item.get("spectra_shape")
    if shape and list(lamp_data.shape) != list(shape):
        return {"wavelength": None, "wavelength_error": (
            f"lamp {lamp['file_name']} is {lamp_data.shape[0]}x{lamp_data.shape[1]} after reduction, the frame "
            f"{shape[0]}x{shape[1]}: they were not reduced with the same slit section")}
    if s["number"] not in extracted:
        return {"wavelength": None, "wavelength_error": "extracted spectrum not found"}
    lamp_flux = lamp_spectrum(lamp_data, trace_from_summary(s), s["aperture_rows"])
    flux, variance, header, sky = extracted[s["number"]]
    try:
        done = calibrate_target(flux, variance, header, sky, lamp_flux, lamp_header, config.settings,
                                lamp["file_name"])
    except ValueError as exc:  # WavelengthFailure, or nothing finite to resample
        return {"wavelength": None, "wavelength_error": f"lamp {lamp['file_name']}: {exc}"}
    n, stem = s["number"], stem_of(item["file_name"])
    science_name = "w" + s["file_name"]
    new.append(put_file_product(services, item, science_name, "calibrated", done.science_fits, "application/fits"))
    title = f"{item.get('object') or stem}  target {n}  ({item['file_name']}, lamp {lamp['file_name']})"
    new.append(put_file_product(services, item, stem_of(science_name) + ".png", "spectrum_plot",
                                spectrum_png(done.wavelength, done.flux, title), "image/png"))
    lamp_name = f"we{stem_of(_reduced_product(lamp)['file_name'])}_for_{stem}_target_{n}"
    new.append(put_file_product(services, item, lamp_name + ".fits", "lamp_calibrated", done.lamp_fits,
                                "application/fits"))
    new.append(put_file_product(services, item, lamp_name + ".png", "lamp_plot",
                                _lamp_plot(lamp["file_name"], done.solution, done.lamp_wavelength, done.lamp_flux),
                                "image/png"))
    summary = _solution_summary(done.science_solution, done.wavelength, lamp["file_name"], done.flexure)
    return {"wavelength": summary, "wavelength_error": None, "calibrated_file_name": science_name}


# ---- a lamp was reduced -----------------------------------------------------------
def _solution_summary(solution, wavelength: np.ndarray, lamp_name: str, flexure=None) -> Dict[str, Any]:
    summary = solution.as_dict()
    summary.pop("lines", None)
    summary.update(range=[round(float(wavelength[0]), 2), round(float(wavelength[-1]), 2)],
                   dispersion=round(float(wavelength[1] - wavelength[0]), 5), lamp=lamp_name,
                   flexure=flexure.as_dict() if flexure else None)
    return summary


def _lamp_plot(lamp_name: str, solution, wavelength, flux) -> bytes:
    return spectrum_png(wavelength, flux, f"lamp {lamp_name}: {solution.n_lines} lines, rms "
                                          f"{solution.rms_angstrom:.3f} A", [line[1] for line in solution.lines])


def solve_lamp(item: Dict[str, Any], frame, prefix: str, services, settings) -> Tuple[Dict[str, Any], List[Dict]]:
    """A lamp's own solution, along the middle of the slit, as soon as it is reduced: the
    observer sees that the setup is what they meant (range, dispersion, lines found)
    before the first science frame, and the lamp gets its `wecfzst_` product."""
    from functions.core.wavelength import WavelengthFailure, solve

    flux = central_lamp_spectrum(frame.data)
    try:
        solution = solve(flux, frame.header, settings)
    except WavelengthFailure as exc:
        return {"wavelength": None, "wavelength_error": str(exc)}, []
    body, wl, fl = calibrated_fits(flux, None, frame.header, solution, item["file_name"])
    name = f"we{prefix}{stem_of(item['file_name'])}"
    products = [put_file_product(services, item, name + ".fits", "lamp_calibrated", body, "application/fits"),
                put_file_product(services, item, name + ".png", "lamp_plot",
                                 _lamp_plot(item["file_name"], solution, wl, fl), "image/png")]
    return {"wavelength": _solution_summary(solution, wl, item["file_name"]), "wavelength_error": None}, products



def lamp_reduced(lamp: Dict[str, Any], services) -> int:
    """Ask for the calibration of the science frames this lamp now serves best: those
    with no lamp, a lamp further away in time, or this lamp reduced differently."""
    sent = 0
    for f in iter_all_files(services.index, lamp["night"], "OBJECT"):
        if f.get("status") != STATUS_REDUCED or not f.get("spectra") or not _same_setup(f, lamp):
            continue
        current = f.get("lamp")
        if current and current.get("file_id") != lamp["file_id"]:
            if choose_lamp([lamp, current], f.get("date_obs"))["file_id"] != lamp["file_id"]:
                continue
        send_task(services, {"task": "calibrate", "file_id": f["file_id"]})
        sent += 1
    return sent
