"""A target's spectrum as the page plots it and a line fit reads it: the calibrated
product (`wecfzst_`: flux on a linear wavelength grid, VAR, SKY, MASK) or, before a
lamp calibrates it, the extracted one (`ecfzst_`, x in pixels), with the lamp spectrum
extracted along the same target and its identified lines. Asked for `fluxed`, the
flux-calibrated product (`fwecfzst_`, erg/s/cm^2/A) when there is one, with the
standard that calibrated it; the counts otherwise, saying why."""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

from golive_data.fitsread import linear_axis
from golive_data.jsonfloat import json_floats

from .products import NoProduct, Store, of_target, spectrum_entry

_LINE = re.compile(r"GSP_A(\d{3})$")


def _identified_lines(header) -> List[Dict[str, Any]]:
    lines = []
    for key in header.keys():
        if _LINE.match(str(key).upper()):
            wavelength = float(header.get(key))
            lines.append({"x": round(wavelength, 3), "label": f"{wavelength:.2f}"})
    return sorted(lines, key=lambda line: line["x"])


def _one_d(hdus) -> Dict[str, Any]:
    primary = hdus[0]
    n = primary.shape[-1]
    out: Dict[str, Any] = {"x": json_floats(linear_axis(primary.header, n), 10), "flux": json_floats(primary.values())}
    extensions = {h.name.upper(): h for h in hdus[1:]}
    for name, field in (("VAR", "variance"), ("SKY", "sky")):
        out[field] = json_floats(extensions[name].values()) if name in extensions else None
    out["mask"] = [int(v) for v in extensions["MASK"].values()] if "MASK" in extensions else None
    return out


def spectrum_data(item: Dict[str, Any], products: List[Dict[str, Any]], store: Store, target: int,
                  version: Optional[int] = None, fluxed: bool = False) -> Dict[str, Any]:
    found = of_target(products, item["file_name"], target, ("calibrated", "extracted", "flux_calibrated"))
    if not found.get("calibrated") and not found.get("extracted"):
        spectrum_entry(item, target)  # says why there is none (no spectra, no such target)
        raise NoProduct(f"{item['file_name']} target {target}: the spectrum is not written yet")
    flux = item.get("flux_calibration") or {}
    product = (fluxed and found.get("flux_calibrated")) or found.get("calibrated") or found["extracted"]
    calibrated = product["kind"] in ("calibrated", "flux_calibrated")
    hdus = store.hdus(product)
    header = hdus[0].header
    summary = next((s for s in item.get("spectra") or [] if int(s.get("number") or 0) == int(target)), {})
    data: Dict[str, Any] = {
        "file_id": item["file_id"], "file_name": item["file_name"], "object": item.get("object"),
        "target": int(target), "version": version, "product": product["file_name"], "calibrated": calibrated,
        "x_unit": "Angstrom" if calibrated else "pixel", "flux_unit": str(header.get("BUNIT") or "adu"),
        **_one_d(hdus), "lamp": None,
        "wavelength": summary.get("wavelength") if calibrated and version is None else None,
        "fluxed": product["kind"] == "flux_calibrated",
        "flux_calibration": ({k: flux.get(k) for k in ("status", "standard", "file_name", "night", "airmass",
                                                       "notes", "reason", "fix")} if flux else None),
    }
    lamp = (of_target(products, item["file_name"], target, ("lamp_calibrated",)).get("lamp_calibrated")
            if calibrated else None)
    if lamp:
        lamp_hdus = store.hdus(lamp)
        n = lamp_hdus[0].shape[-1]
        data["lamp"] = {"file_name": lamp["file_name"], "x": json_floats(linear_axis(lamp_hdus[0].header, n), 10),
                        "flux": json_floats(lamp_hdus[0].values()), "lines": _identified_lines(lamp_hdus[0].header)}
    return data
