"""Flux calibration as the frames arrive, after the wavelength calibration it rests on.

A spectrophotometric standard (recognised by OBJECT name or by pointing:
core/fluxcal.find_standard) gets a sensitivity function from its brightest target's
wavelength-calibrated spectrum, kept as its `sens_` product (versioned with the
frame's reduction, with its provenance) and summarised in the item's `sensitivity`.
Every science frame whose spectra are wavelength-calibrated then gets `fwecfzst_`
products in erg/s/cm^2/A, with the variance carried through, from the best standard:

- of the same setup by the lamps' rules (calibrations.CRITERIA['COMP']: camera,
  grating, angles and blocking filter; slit and binning may differ, and a different
  slit is noted, since its losses are not the standard's);
- of the frame's own night, nearest in time; with none that night, the nearest earlier
  night's within the calibration window, and the item says so.

Why a step of its own: a standard reduced after the science frames it serves
calibrates them when it arrives (`standard_reduced`, like a late lamp), reading only
their small calibrated products, not reducing anything again. The wavelength
calibration calls it at its end, so a frame that finds its standard already there
is flux-calibrated in the same task.
"""
from __future__ import annotations

import io
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from functions.core.calibrations import compare_setup, nights_from, rank_calibrations
from functions.core.fluxcal import (FluxCalFailure, build_sensitivity, find_standard,
                                    flux_calibrated_fits, read_sensitivity_fits, sensitivity_fits)
from functions.core.plot import spectrum_png
from functions.products import product_keys, put_file_product, remove_unlisted, stamp_version, stem_of
from golive_data.index import iter_all_files, utcnow
from golive_data.item import FLUX_CALIBRATED, FLUX_FAILED, FLUX_NO_STANDARD, FLUX_NOT_CALIBRATED

log = logging.getLogger("goodman_live.flux")

FLUX_KINDS = ("flux_calibrated", "flux_plot")
SENSITIVITY_KINDS = ("sensitivity", "sensitivity_plot")
#: Sensitivities a warm worker keeps (a night has one or two standards).
_sensitivity_cache: Dict[Tuple[str, Any], Any] = {}
_CACHE_SIZE = 4


def recognise(item: Dict[str, Any]):
    """(Standard, how) when the frame is a spectrophotometric standard, else None."""
    if item.get("obstype") != "OBJECT":
        return None
    return find_standard(item.get("object") or "", item.get("ra"), item.get("dec"))


def _calibrated(item: Dict[str, Any]) -> List[Tuple[Dict[str, Any], Dict[str, Any]]]:
    """(spectrum entry, its `wecfzst_` product entry) for every wavelength-calibrated target."""
    by_name = {p["file_name"]: p for p in item.get("products", []) if p.get("kind") == "calibrated"}
    return [(s, by_name[s["calibrated_file_name"]]) for s in item.get("spectra") or []
            if s.get("wavelength") and s.get("calibrated_file_name") in by_name]


def _body(services, product: Dict[str, Any]) -> bytes:
    return services.s3.get_object(Bucket=product["bucket"], Key=product["key"])["Body"].read()


def _read_spectrum(body: bytes):
    """(wavelength, counts, variance, header, mask) of a `wecfzst_` product; `mask`: the
    columns with no good pixel in the aperture (saturated ones among them), or None."""
    from astropy.io import fits

    with fits.open(io.BytesIO(body)) as hdul:
        header = hdul[0].header.copy()
        counts = np.asarray(hdul[0].data, dtype=float)
        variance = np.asarray(hdul["VAR"].data, dtype=float) if "VAR" in hdul else None
        mask = np.asarray(hdul["MASK"].data, dtype=bool) if "MASK" in hdul else None
    pixels = np.arange(counts.size) + 1.0
    wavelength = header["CRVAL1"] + (pixels - header.get("CRPIX1", 1.0)) * header["CDELT1"]
    return wavelength, counts, variance, header, mask


def _build(item: Dict[str, Any], standard, how: str, services) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """The standard frame's sensitivity (its brightest calibrated target's), or why not."""
    summary: Dict[str, Any] = {"standard": standard.name, "how": how, "built_at": utcnow()}
    targets = _calibrated(item)
    if not targets:
        return {**summary, "error": "no wavelength-calibrated spectrum of the standard"}, []
    spectrum, product = min(targets, key=lambda t: t[0]["number"])
    wavelength, counts, variance, header, mask = _read_spectrum(_body(services, product))
    try:
        sens = build_sensitivity(wavelength, counts, variance, header, standard, mask=mask)
    except FluxCalFailure as exc:
        return {**summary, "error": str(exc)}, []
    stem = stem_of(item["file_name"])
    provenance = [f"standard {standard.name} ({how}): {item['file_name']} night {item['night']} "
                  f"target {spectrum['number']}", f"wavelength calibration: lamp {(item.get('lamp') or {}).get('file_name')}"]
    products = [
        put_file_product(services, item, f"sens_{stem}.fits", "sensitivity", sensitivity_fits(sens, provenance),
                         "application/fits"),
        put_file_product(services, item, f"sens_{stem}.png", "sensitivity_plot",
                         spectrum_png(sens.wavelength, sens.sensitivity,
                                      f"sensitivity from {standard.name} ({item['file_name']}), "
                                      f"airmass {sens.airmass:.2f}, rms {100 * sens.rms:.1f}%"), "image/png")]
    summary.update(airmass=round(float(sens.airmass), 3), exptime=float(sens.exptime), points=int(sens.points),
                   rms=round(float(sens.rms), 4), masked=[list(b) for b in sens.masked],
                   range=[round(float(sens.wavelength[0]), 1), round(float(sens.wavelength[-1]), 1)],
                   target=spectrum["number"], file_name=products[0]["file_name"], bucket=products[0]["bucket"],
                   key=products[0]["key"])
    return summary, products


def _has_sensitivity(f: Dict[str, Any]) -> bool:
    return bool((f.get("sensitivity") or {}).get("key"))


def find_standard_frame(item: Dict[str, Any], services, config) -> Tuple[Optional[Dict[str, Any]], List[str], List[str]]:
    """(the standard frame to use, what differs, nights searched): see the module docstring."""
    tol = float(config.settings.calibration_angle_tolerance)

    def candidates(night: str) -> List[Dict[str, Any]]:
        found = {f["file_id"]: f for f in iter_all_files(services.index, night, "OBJECT") if _has_sensitivity(f)}
        if night == item["night"] and _has_sensitivity(item):
            found[item["file_id"]] = item  # its own sensitivity, not listed yet
        return list(found.values())

    searched = [item["night"]]
    ranked = rank_calibrations("COMP", item, candidates(item["night"]), tol)
    if not ranked:
        for night in nights_from(item["night"], config.window_days):
            searched.append(night)
            ranked = rank_calibrations("COMP", item, candidates(night), tol)
            if ranked:
                std, notes = ranked[0]
                return std, [f"standard {std['file_name']} from night {night}: none of this setup on "
                             f"{item['night']}"] + [f"standard {std['file_name']}: {n}" for n in notes], searched
        return None, [], searched
    std, notes = ranked[0]
    return std, [f"standard {std['file_name']}: {n}" for n in notes], searched


def _sensitivity(services, summary: Dict[str, Any]):
    """A standard's sensitivity, kept by a warm worker: a standard built again writes
    the same key, so its build time is part of what is kept."""
    key = (summary["key"], summary.get("built_at"))
    if key not in _sensitivity_cache:
        if len(_sensitivity_cache) >= _CACHE_SIZE:
            _sensitivity_cache.pop(next(iter(_sensitivity_cache)))
        _sensitivity_cache[key] = read_sensitivity_fits(_body(services, summary))
    return _sensitivity_cache[key]


def _reference(std: Dict[str, Any]) -> Dict[str, Any]:
    s = std["sensitivity"]
    return {"standard": s["standard"], "file_id": std["file_id"], "file_name": std["file_name"],
            "night": std["night"], "date_obs": std.get("date_obs"), "airmass": s.get("airmass"), "key": s["key"],
            "built_at": s.get("built_at")}


def flux_calibrate(item: Dict[str, Any], services, config, force: bool = False) -> Dict[str, Any]:
    """Flux-calibrate a science frame's wavelength-calibrated spectra (and, for a
    standard, build its sensitivity first). Idempotent: nothing is done when its
    spectra were already calibrated with this very sensitivity, unless `force` (the
    wavelength calibration changed). Returns the fields written."""
    fields: Dict[str, Any] = {}
    found = recognise(item)
    sens_products: List[Dict[str, Any]] = []
    if found and (force or not _has_sensitivity(item)):
        fields["sensitivity"], sens_products = _build(item, *found, services)
        item = {**item, "sensitivity": fields["sensitivity"]}
    targets = _calibrated(item)
    std, notes, searched = find_standard_frame(item, services, config) if targets else (None, [], [])
    current = item.get("flux_calibration") or {}
    if (not force and std is not None and not fields and current.get("status") == FLUX_CALIBRATED
            and current.get("key") == std["sensitivity"]["key"]):
        return {}
    replaced = FLUX_KINDS + (SENSITIVITY_KINDS if "sensitivity" in fields else ())
    kept = [p for p in item.get("products", []) if p.get("kind") not in replaced]
    earlier = product_keys(p for p in item.get("products", []) if p.get("kind") in replaced)
    spectra = [{k: v for k, v in s.items() if k != "flux_file_name"} for s in item.get("spectra") or []]
    new: List[Dict[str, Any]] = []
    if not targets:
        fields["flux_calibration"] = {"status": FLUX_NOT_CALIBRATED,
                                      "reason": "no wavelength-calibrated spectrum to flux-calibrate"}
    elif std is None:
        fields["flux_calibration"] = {
            "status": FLUX_NO_STANDARD,
            "reason": f"no spectrophotometric standard of this setup on {', '.join(searched)}",
            "fix": "observe a standard (e.g. LTT 3218, LTT 7379, EG 274, Feige 110) with this setup"}
    else:
        sens = _sensitivity(services, std["sensitivity"])
        note = (f"{std['sensitivity']['standard']} ({std['file_name']}, night {std['night']}, "
                f"airmass {std['sensitivity'].get('airmass')})")
        by_number = {s["number"]: s for s in spectra}
        failures = []
        for spectrum, product in targets:
            try:
                body, wavelength, flux = flux_calibrated_fits(_body(services, product), sens, note)
            except FluxCalFailure as exc:
                failures.append(f"target {spectrum['number']}: {exc}")
                continue
            name = "f" + spectrum["calibrated_file_name"]
            new.append(put_file_product(services, item, name, "flux_calibrated", body, "application/fits"))
            title = f"{item.get('object') or item['file_name']}  target {spectrum['number']}  flux-calibrated with {note}"
            new.append(put_file_product(services, item, stem_of(name) + ".png", "flux_plot",
                                        spectrum_png(wavelength, flux, title), "image/png"))
            by_number[spectrum["number"]]["flux_file_name"] = name
        fields["flux_calibration"] = {
            "status": FLUX_CALIBRATED if len(failures) < len(targets) else FLUX_FAILED,
            **_reference(std), "notes": notes, "errors": failures}
    fields["flux_calibration"]["at"] = utcnow()
    new = stamp_version(sens_products + new, int(item.get("reduction_version") or 1))
    services.index.update_file(item["file_id"], {**fields, "spectra": spectra, "products": kept + new})
    remove_unlisted(item["file_id"], earlier, services)
    log.info("flux: %s %s", item["file_name"], fields["flux_calibration"].get("status"))
    if (fields.get("sensitivity") or {}).get("key"):
        standard_reduced({**item, **fields}, services, config)
    return fields


def _serves_better(std: Dict[str, Any], f: Dict[str, Any], tol: float) -> bool:
    """Whether standard frame `std` now ranks above the one frame `f` was calibrated with."""
    if not compare_setup("COMP", f, std, tol)[0]:
        return False
    current = f.get("flux_calibration") or {}
    if current.get("status") != FLUX_CALIBRATED or current.get("file_id") == std["file_id"]:
        return True
    known = {**f, "night": current.get("night"), "file_name": current.get("file_name"), "file_id": current["file_id"],
             "date_obs": current.get("date_obs")}
    best = rank_calibrations("COMP", f, [std, known], tol)
    return bool(best) and best[0][0]["file_id"] == std["file_id"]


def standard_reduced(std: Dict[str, Any], services, config, settle: bool = True) -> int:
    """Ask for the flux calibration of the science frames this standard now serves
    best, on its night and the later nights of the window (as a late lamp does); once
    more after the night's listing has caught up, with `settle`."""
    from functions.spectroscopy import ask_served

    tol = float(config.settings.calibration_angle_tolerance)
    nights = [std["night"]] + nights_from(std["night"], config.window_days, step=1)
    return ask_served(std, services, nights, "standard_reduced", "flux", "flux_calibration",
                      lambda f: bool(_calibrated(f)), lambda f: _serves_better(std, f, tol), settle)
