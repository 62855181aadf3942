"""Spectra as the frames arrive: extracted right after a science frame's 2-D reduction,
wavelength-calibrated as soon as a comparison lamp of its configuration is reduced.

The two halves are separate on purpose. Extraction needs the reduced 2-D frame,
which only exists in the worker that reduced it (cosmic rays are rejected in the rows
each extraction reads, before the whole frame is cleaned: reduction.reduce_file);
calibration needs only the extracted spectra (small `ecfzst_` products), the traces (in
the index) and the lamp. So a lamp that arrives after its science frames costs each of
them a fraction of a second, not a second 2-D reduction.

Which lamp: a reduced lamp whose setup fits the frame (`calibrations.CRITERIA`: same
camera, grating, angles and blocking filter; binning, slit, ROI and WAVMODE may
differ, and the solution is then mapped onto the frame's pixels), of the same night,
exact matches first, then the nearest in time; with none that night, the nearest
earlier night's within the calibration window, corrected with the sky lines. A better
lamp reduced later replaces it. Every OBJECT frame carries a top-level
`spectra_status` (calibrated, partly_calibrated, not_calibrated, waiting_for_lamp,
no_targets) with `spectra_reason` and `spectra_fix`, and `calibration_notes` lists
what differed between the frame and the calibrations it used.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from golive_data.index import iter_all_files, utcnow
from golive_data.item import CLEANING_QUEUED, STATUS_FAILED, STATUS_REDUCED, STATUS_REDUCING, STATUS_UNSUPPORTED
from functions.core.calibrations import compare_setup, nights_from, rank_calibrations, setup_of
from functions.core.plot import spectrum_png
from functions.core.spectra import (calibrate_target, calibrated_fits, central_lamp_spectrum, extract_targets,
                                    extracted_fits, lamp_spectrum_for, trace_from_summary)
from functions.products import (product_keys, put_file_product, read_fits, read_fits_hdus, remove_unlisted,
                                stamp_version, stem_of)
from functions.services import send_task
from functions.proposals import proposal_settings

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


def config_for_item(config, item: Dict[str, Any], services=None):
    """The configuration a file's reductions and calibrations use: `config` with its
    settings merged with the file item's own overrides (`settings`: those of the
    requested version it shows, golive_data/versions.py, which the API merged over its
    proposal's), or else, given `services`, its proposal's settings (functions/proposals.py)."""
    if getattr(config, "file_id", None) == item.get("file_id"):
        return config  # already this file's (the proposal's settings are a lookup)
    overrides = item.get("settings")
    if not item.get("settings_version") and services is not None:
        overrides = {**proposal_settings(item, services), **(overrides or {})}
    merged = replace(config, settings=config.settings.merged(overrides)) if overrides else config
    return replace(merged, file_id=item.get("file_id")) if hasattr(merged, "file_id") else merged


# ---- extraction (in the worker that reduced the frame) ---------------------------
def extract(item: Dict[str, Any], frame, prefix: str, services, settings, clean_windows: bool = False,
            report: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, Any], List[Dict], Extracted]:
    """`ecfzst_` products of every target on a reduced science frame (`clean_windows`:
    not yet cleaned of cosmic rays, which are then rejected in the targets' rows, as
    the reduction's `report` says).

    Returns the index fields (target summaries with their traces, notes), the product
    entries, and the spectra in memory for the calibration that follows at once."""
    try:
        spectra, notes = extract_targets(frame.data, frame.mask, frame.header, settings, clean_windows=clean_windows,
                                         report=report)
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


# ---- calibration ------------------------------------------------------------------
@dataclass
class LampChoice:
    """The lamp for a science frame, what differs from the frame, and what is on its way."""

    lamp: Optional[Dict[str, Any]] = None
    notes: List[str] = field(default_factory=list)
    pending: int = 0
    nights_searched: List[str] = field(default_factory=list)


def _lamp_ref(choice: LampChoice) -> Optional[Dict[str, Any]]:
    """What a calibration depends on: the lamp, the calibrations of its reduction, and
    the setup it was chosen for."""
    lamp = choice.lamp
    if lamp is None:
        return None
    reduced = _reduced_product(lamp)
    return {"file_id": lamp["file_id"], "file_name": lamp["file_name"], "date_obs": lamp.get("date_obs"),
            "night": lamp.get("night"), "reduced_key": reduced["key"] if reduced else None,
            "calibrations": lamp.get("calibrations"), "setup": setup_of(lamp), "notes": list(choice.notes)}


def _reduced_product(item: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    return next((p for p in item.get("products", []) if p.get("kind") == "reduced"), None)


def _tolerance(config) -> float:
    return float(config.settings.calibration_angle_tolerance)


def _ready(f: Dict[str, Any]) -> bool:
    return f.get("status") == STATUS_REDUCED and _reduced_product(f) is not None


def find_lamp(item: Dict[str, Any], services, config) -> LampChoice:
    """The lamp to use: see the module docstring."""
    config = config_for_item(config, item, services)
    tol = _tolerance(config)
    lamps = list(iter_all_files(services.index, item["night"], "COMP"))
    fitting = [f for f in lamps if compare_setup("COMP", item, f, tol)[0]]
    pending = sum(1 for f in fitting if f.get("status") not in (STATUS_REDUCED, STATUS_FAILED, STATUS_UNSUPPORTED))
    ranked = rank_calibrations("COMP", item, [f for f in fitting if _ready(f)], tol)
    if ranked:
        return LampChoice(ranked[0][0], [f"lamp {ranked[0][0]['file_name']}: {n}" for n in ranked[0][1]], pending)
    choice = LampChoice(pending=pending, nights_searched=[item["night"]])
    if pending or not config.settings.lamp_other_nights:
        return choice
    for night in nights_from(item["night"], config.window_days):
        choice.nights_searched.append(night)
        ranked = rank_calibrations("COMP", item, [f for f in iter_all_files(services.index, night, "COMP")
                                                  if _ready(f)], tol)
        if ranked:
            lamp, notes = ranked[0]
            choice.lamp = lamp
            choice.notes = ([f"lamp {lamp['file_name']} from night {night}: no compatible lamp on {item['night']}; "
                             f"corrected with the sky lines where they are measurable"]
                            + [f"lamp {lamp['file_name']}: {n}" for n in notes])
            return choice
    return choice


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


def _no_lamp_reason(item: Dict[str, Any], choice: LampChoice) -> str:
    if choice.pending:
        return f"waiting for {choice.pending} comparison lamp(s) of this setup still being reduced"
    where = (f"on night {item['night']} or the {len(choice.nights_searched) - 1} nights before"
             if len(choice.nights_searched) > 1 else f"on night {item['night']}")
    return (f"no comparison lamp fits this setup (camera {item.get('camera')}, grating {item.get('grating')}, "
            f"mode {item.get('mode')}, filter {item.get('filter2')}) {where} yet: the spectrum is calibrated as "
            f"soon as one arrives")


#: What would fix a refusal, by what the reason says (first match wins).
_FIXES = (
    ("comparison lamp", "take a comparison lamp with the same grating, angles and blocking filter (any binning or "
                        "slit will do)"),
    ("RMS", "check the lamp exposure (saturated or faint lines); wavelength_max_rms_pixels sets the limit"),
    ("brightest lamp lines", "check GRT_ANG/CAM_ANG and the lamp keywords (LAMP_*) in the header"),
    ("NIST line list", "name the lamp in OBJECT or the LAMP_* keywords"),
    ("lines detected", "a longer lamp exposure: too few lines stand above the noise"),
    ("lines identified", "check GRT_ANG/CAM_ANG and the lamp keywords; a longer lamp exposure may help"),
    ("no lines/mm", "the header lacks GRATING or the grating angles"),
)


def _fix_for(reason: Optional[str]) -> Optional[str]:
    text = reason or ""
    return next((fix for key, fix in _FIXES if key in text), None)


def spectra_status(item: Dict[str, Any], spectra: List[Dict[str, Any]], lamp_reason: Optional[str] = None
                   ) -> Dict[str, Any]:
    """The frame's top-level spectra fields: whether its spectra are calibrated, why
    not, and what would fix it, so the answer is where users look first."""
    if not spectra:
        notes = item.get("spectra_notes") or []
        reason = "; ".join(notes) or "no target found on the slit"
        return {"spectra_status": "no_targets", "spectra_reason": reason,
                "spectra_fix": "check the exposure and the pointing; background_threshold and the target settings "
                               "set what counts as a target"}
    if lamp_reason is not None:
        return {"spectra_status": "waiting_for_lamp", "spectra_reason": lamp_reason, "spectra_fix": _fix_for(lamp_reason)}
    done = [s for s in spectra if s.get("wavelength")]
    errors = [f"target {s['number']}: {s.get('wavelength_error')}" for s in spectra if not s.get("wavelength")]
    if len(done) == len(spectra):
        return {"spectra_status": "calibrated", "spectra_reason": None, "spectra_fix": None}
    first = next((s.get("wavelength_error") for s in spectra if not s.get("wavelength")), None)
    state = "partly_calibrated" if done else "not_calibrated"
    return {"spectra_status": state, "spectra_reason": "; ".join(errors), "spectra_fix": _fix_for(first)}


def _calibration_notes(item: Dict[str, Any], lamp_notes: List[str]) -> List[str]:
    return list(item.get("master_notes") or []) + list(lamp_notes)


def spectra_ready(item: Dict[str, Any]) -> bool:
    """A frame's reduction is done up to its products: it is reduced, or only its 2-D
    frame's cosmic-ray cleaning is still queued (its spectra are final). A frame
    retrying after a failure part-way is not: it will be reduced again whole."""
    return item.get("status") == STATUS_REDUCED or (item.get("status") == STATUS_REDUCING
                                                    and item.get("cleaning") == CLEANING_QUEUED)


#: A frame that finds its lamp still being reduced looks again this often, this many
#: times (the lamp's own task also asks for its frames, but may look before this
#: frame's spectra are listed).
PENDING_LAMP_LOOK_SECONDS = 3
PENDING_LAMP_LOOKS = 20


def calibrate(item: Dict[str, Any], services, config, extracted: Optional[Extracted] = None, looks: int = 0) -> None:
    """Wavelength-calibrate every extracted spectrum of a science frame.

    Idempotent: nothing is done when the frame was already calibrated with this very
    lamp (same lamp, same reduction of it), unless fresh spectra are handed in. The
    item's own settings (config_for_item) apply. `looks`: how many times it has looked
    again for a lamp that was still being reduced."""
    config = config_for_item(config, item, services)
    spectra = [dict(s) for s in item.get("spectra") or []]
    if not spectra:
        services.index.update_file(item["file_id"], {**spectra_status(item, spectra),
                                                     "calibration_notes": _calibration_notes(item, [])})
        return
    choice = find_lamp(item, services, config)
    ref = _lamp_ref(choice)
    if extracted is None and item.get("lamp") == ref and ref is not None:
        return
    kept = [p for p in item.get("products", []) if p.get("kind") not in CALIBRATED_KINDS]
    earlier = product_keys(p for p in item.get("products", []) if p.get("kind") in CALIBRATED_KINDS)
    if choice.lamp is None:
        if choice.pending:
            _look_again(item, services, looks)
        reason = _no_lamp_reason(item, choice)
        for s in spectra:
            s.update(wavelength=None, wavelength_error=reason)
        fields = {"spectra": spectra, "products": kept, "lamp": None, "waiting_for": _waiting(item, True),
                  "calibration_notes": _calibration_notes(item, []), **spectra_status(item, spectra, reason)}
        services.index.update_file(item["file_id"], fields)
        remove_unlisted(item["file_id"], earlier, services)
        _flux(item, fields, services, config)
        return
    lamp = choice.lamp
    try:
        lamp_data, lamp_header = _load_lamp(lamp, services)
    except services.s3.exceptions.NoSuchKey:
        # The lamp was reduced again after the night's listing was read (an index lags
        # its table): its new product is listed in a moment. Look again then.
        if not _look_again(item, services, looks):
            raise
        log.info("%s: lamp %s was reduced again meanwhile; looking again", item["file_name"], lamp["file_name"])
        return
    extracted = extracted if extracted is not None else _read_extracted(item, services)
    new: List[Dict[str, Any]] = []
    mapping_notes: List[str] = []
    for s in spectra:
        s.update(_calibrate_one(item, s, choice, lamp_data, lamp_header, extracted, services, config, new,
                                mapping_notes))
    lamp_notes = list(dict.fromkeys(choice.notes + mapping_notes))
    new = stamp_version(new, int(item.get("reduction_version") or 1))
    fields = {"spectra": spectra, "products": kept + new, "lamp": ref, "waiting_for": _waiting(item, False),
              "calibration_notes": _calibration_notes(item, lamp_notes), **spectra_status(item, spectra),
              "timeline": {**(item.get("timeline") or {}), "calibrated_at": utcnow()}}
    services.index.update_file(item["file_id"], fields)
    remove_unlisted(item["file_id"], earlier, services)
    _flux(item, fields, services, config)
    log.info("calibrated %s with %s: %s", item["file_name"], lamp["file_name"],
             ", ".join(f"#{s['number']} " + (f"rms {s['wavelength']['rms_pixels']:.3f} px" if s.get("wavelength")
                                              else f"failed ({s.get('wavelength_error')})") for s in spectra))


def _flux(item: Dict[str, Any], fields: Dict[str, Any], services, config) -> None:
    """The flux calibration on the new wavelength calibration (functions/fluxing.py),
    in the same task: the spectra it rests on changed, so it is redone whole."""
    from functions import fluxing

    fluxing.flux_calibrate({**item, **fields}, services, config, force=True)


def _look_again(item: Dict[str, Any], services, looks: int) -> bool:
    """Queue this frame's calibration once more, PENDING_LAMP_LOOK_SECONDS from now,
    unless it has looked PENDING_LAMP_LOOKS times already; whether it was queued."""
    if looks >= PENDING_LAMP_LOOKS:
        return False
    send_task(services, {"task": "calibrate", "file_id": item["file_id"], "looks": looks + 1},
              delay=PENDING_LAMP_LOOK_SECONDS)
    return True


def _calibrate_one(item, s, choice, lamp_data, lamp_header, extracted, services, config, new,
                   mapping_notes) -> Dict[str, Any]:
    lamp = choice.lamp
    if s["number"] not in extracted:
        return {"wavelength": None, "wavelength_error": "extracted spectrum not found"}
    flux, variance, header, sky = extracted[s["number"]]
    lamp_flux, notes = lamp_spectrum_for(lamp_data, lamp_header, header, trace_from_summary(s), s["aperture_rows"])
    mapping_notes.extend(f"lamp {lamp['file_name']}: {n}" for n in notes if n not in mapping_notes)
    provenance = list(dict.fromkeys(choice.notes + [f"lamp {lamp['file_name']}: {n}" for n in notes]))
    try:
        done = calibrate_target(flux, variance, header, sky, lamp_flux, lamp_header, config.settings,
                                lamp["file_name"], provenance)
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
    summary["lamp_night"] = lamp.get("night")
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



def _serves_better(lamp: Dict[str, Any], f: Dict[str, Any], tol: float) -> bool:
    """Whether `lamp` now ranks above the lamp science frame `f` was calibrated with."""
    if not compare_setup("COMP", f, lamp, tol)[0]:
        return False
    current = f.get("lamp")
    if not current:
        return True
    if current.get("file_id") == lamp["file_id"]:
        return True  # the same lamp reduced again (other calibrations): calibrate again
    known = {**(current.get("setup") or setup_of(f)), "night": current.get("night") or f.get("night"),
             "date_obs": current.get("date_obs"), "file_name": current.get("file_name"), "file_id": current["file_id"]}
    best = rank_calibrations("COMP", f, [lamp, known], tol)
    return bool(best) and best[0][0]["file_id"] == lamp["file_id"]


def lamp_reduced(lamp: Dict[str, Any], services, config, settle: bool = True) -> int:
    """Ask for the calibration of the science frames this lamp now serves best: those
    of its night, and of the later nights of the window, with no lamp, a lamp that
    ranks lower, or this lamp reduced differently. The night's listing (a GSI) may not
    yet show a science frame reduced in the same instant, so with `settle` the same
    look is taken again once it has caught up (calibrate is idempotent)."""
    tol = _tolerance(config)
    nights = [lamp["night"]]
    if config.settings.lamp_other_nights:
        nights += nights_from(lamp["night"], config.window_days, step=1)
    return ask_served(lamp, services, nights, "lamp_reduced", "calibrate", "lamp",
                      lambda f: spectra_ready(f) and bool(f.get("spectra")),
                      lambda f: _serves_better(lamp, f, tol), settle)


def ask_served(calib: Dict[str, Any], services, nights: List[str], again: str, task: str, used: str,
               wanted, serves_better, settle: bool) -> int:
    """Queue `task` for the science frames of `nights` that `wanted` and that the
    calibration frame `calib` (a lamp, a standard) now `serves_better`, except those of a
    later night that use a calibration of their own night (`used`: the item's field
    naming it). With `settle`, the same look (`again`) is taken once more after the
    night's listing (a GSI) has caught up with frames reduced in the same instant."""
    if settle:
        send_task(services, {"task": again, "file_id": calib["file_id"]}, delay=services.settings.gsi_settle_seconds)
    sent = 0
    for night in nights:
        for f in iter_all_files(services.index, night, "OBJECT"):
            if f["file_id"] == calib["file_id"] or not wanted(f):
                continue
            if night != calib["night"] and (f.get(used) or {}).get("night") == night:
                continue  # it has a calibration of its own night
            if serves_better(f):
                send_task(services, {"task": task, "file_id": f["file_id"]})
                sent += 1
    return sent
