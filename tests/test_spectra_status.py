"""The top-level answer to "are this frame's spectra calibrated?" (functions/spectroscopy.py)."""
from functions.spectroscopy import spectra_status

OK = {"number": 1, "wavelength": {"rms_pixels": 0.02}, "wavelength_error": None}
BAD = {"number": 2, "wavelength": None,
       "wavelength_error": "lamp a.fits: reference: RMS 0.300 px (0.1 A) over 20 lines is above the limit"}


def test_every_target_calibrated():
    assert spectra_status({}, [OK]) == {"spectra_status": "calibrated", "spectra_reason": None, "spectra_fix": None}


def test_some_or_none_calibrated_say_which_and_why():
    part = spectra_status({}, [OK, BAD])
    assert part["spectra_status"] == "partly_calibrated"
    assert part["spectra_reason"].startswith("target 2: lamp a.fits: reference: RMS")
    assert "wavelength_max_rms_pixels" in part["spectra_fix"]
    none = spectra_status({}, [BAD])
    assert none["spectra_status"] == "not_calibrated"


def test_no_lamp_and_no_targets():
    waiting = spectra_status({}, [BAD], "no comparison lamp fits this setup (...) on night 2024-03-14 yet")
    assert waiting["spectra_status"] == "waiting_for_lamp" and "comparison lamp" in waiting["spectra_fix"]
    empty = spectra_status({"spectra_notes": ["no target above the detection level"]}, [])
    assert empty["spectra_status"] == "no_targets" and "detection level" in empty["spectra_reason"]
    assert spectra_status({}, [])["spectra_reason"] == "no target found on the slit"
