"""`python -m infra.local replay` as a user runs it: its own embedded stack, the sync
agent's CLI, the queue, the functions, the API, the products."""
import json
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

FIELDS = {"file_id", "night", "file_name", "obstype", "configuration", "status", "error", "products"}


def _replay(raw_dir, out_dir):
    return subprocess.run([sys.executable, "-m", "infra.local", "replay", str(raw_dir), "--out", str(out_dir),
                           "--timeout", "120"], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_a_simulated_night_replays_end_to_end(sim_night, tmp_path):
    proc = _replay(sim_night, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    truth = json.loads((sim_night / "truth.json").read_text())
    assert len(index) == 25
    for entry in index:
        assert FIELDS <= set(entry), entry
        assert entry["error"] is None and entry["night"] == "2024-03-14"
        reduced = entry["obstype"] in ("COMP", "OBJECT")
        assert entry["status"] == ("reduced" if reduced else "indexed"), entry
        kinds = {p["kind"] for p in entry["products"]}
        expected = {"header", "preview_raw", "reduced", "preview_reduced"} if reduced else {"header"}
        if entry["obstype"] == "COMP":
            expected |= {"lamp_calibrated", "lamp_plot"}
        if entry["obstype"] == "OBJECT":
            expected |= {"extracted", "calibrated", "spectrum_plot", "lamp_calibrated", "lamp_plot"}
            # the simulator's default targets, EG 21 and LTT 3218, are spectrophotometric standards
            if (entry.get("sensitivity") or {}).get("key"):
                expected |= {"sensitivity", "sensitivity_plot"}
            if (entry.get("flux_calibration") or {}).get("status") == "calibrated":
                expected |= {"flux_calibrated", "flux_plot"}
        assert kinds == expected
        for product in entry["products"]:
            assert {"file_name", "kind", "key"} <= set(product)
            assert (tmp_path / "out" / entry["night"] / product["file_name"]).stat().st_size == product["size"]
    masters = sorted(p.name for p in (tmp_path / "out" / "2024-03-14").glob("*master*.fits"))
    assert [m.split("_RED")[0] for m in masters] == ["master_bias", "norm_master_flat"]
    types = [e["obstype"] for e in index]
    assert types.count("BIAS") == 10 and types.count("FLAT") == 10
    assert types.count("COMP") == 2 and types.count("OBJECT") == 3
    assert len({e["configuration"] for e in index}) == 1
    assert {e["file_name"] for e in index} == {f["name"] for f in truth["frames"]}
    # Each science frame says whether its spectra are calibrated, in index.json and in the summary.
    science = [e for e in index if e["obstype"] == "OBJECT"]
    assert {e["spectra_status"] for e in science} == {"calibrated"}, [e.get("spectra_reason") for e in science]
    assert "science frames: 3, calibrated 3" in proc.stdout, proc.stdout
    for e in science:
        assert f"  {e['file_name']}: calibrated" in proc.stdout


def test_a_night_with_broken_files_exits_1_and_says_why(sim_night, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = sorted(sim_night.glob("*.fits"))[0]
    shutil.copy(good, raw / good.name)
    (raw / "0900_cut.fits").write_bytes(good.read_bytes()[:-2880 * 5])   # the writer died
    (raw / "0901_log.fits").write_text("not a frame\n")
    proc = _replay(raw, tmp_path / "out")
    assert proc.returncode == 1
    index = {e["file_name"]: e for e in json.loads((tmp_path / "out" / "index.json").read_text())}
    assert index[good.name]["status"] == "indexed"
    assert index["0900_cut.fits"]["status"] == "not_uploaded"      # never complete: not sent half-written
    assert index["0901_log.fits"]["status"] == "failed" and "not a FITS file" in index["0901_log.fits"]["error"]
    assert "0900_cut.fits: not_uploaded" in proc.stdout and "0901_log.fits: failed" in proc.stdout


REAL_AFTERNOON = ROOT.parent / "shared" / "data" / "real" / "jsreding_930_20180203"


@pytest.mark.skipif(not REAL_AFTERNOON.is_dir(), reason="../shared/data/real is not beside this clone "
                                                        "(52 real frames, 48 MB, not committed)")
def test_the_real_calibration_afternoon_replays_with_masters(tmp_path):
    proc = _replay(REAL_AFTERNOON, tmp_path / "out")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert len(index) == 52
    by_type = {}
    for e in index:
        by_type.setdefault(e["obstype"], set()).add(e["status"])
    assert by_type == {"BIAS": {"indexed"}, "FLAT": {"indexed"}, "COMP": {"reduced"}}
    night = tmp_path / "out" / "2018-02-03"
    biases = sorted(p.name for p in night.glob("master_bias_RED_SP_2x2_R05.27_G01.45_2071x200_2018-02-03_n*.fits"))
    flats = sorted(p.name for p in night.glob("norm_master_flat_RED_930_G13.0-C24.0_*_n15.fits"))
    assert biases and biases[-1].endswith("_n31.fits") and len(flats) == 1
    # The Fe lamps are 1x2 binned: no bias or flat of the afternoon matches them, and they say so.
    lamp = next(e for e in index if e["obstype"] == "COMP")
    assert lamp["waiting_for"] == ["master_bias", "master_flat"]
    assert "no master bias" in lamp["reduction"]["steps_skipped"]["bias"]
    # No reference lamp exists at these 930 settings: each Fe lamp is solved from the
    # grating equation and goodman's NIST lists, as soon as it is reduced.
    lamps = [e for e in index if e["obstype"] == "COMP"]
    for e in lamps:
        w = e["wavelength"]
        assert w["method"] == "grating-equation" and w["rms_angstrom"] < 0.05 and w["n_lines"] >= 15, e
        print(f"{e['file_name']}: {w['range'][0]:.1f}-{w['range'][1]:.1f} A, rms {w['rms_angstrom']:.3f} A "
              f"({w['rms_pixels']:.3f} px), {w['n_lines']} lines")


def test_the_summary_says_which_science_frames_are_calibrated_and_why_not():
    from infra.local.replay import spectra_summary

    no_lamp = "no comparison lamp fits this setup (camera BLUE, grating 400) on night 2024-03-14 yet"
    entries = [
        {"file_name": "0001_bias.fits", "obstype": "BIAS", "status": "indexed"},
        {"file_name": "0010_a.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "calibrated",
         "spectra_reason": None, "calibration_notes": ["lamp 0274_Fe.fits: binning 1x2 vs 2x2"]},
        {"file_name": "0011_b.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "calibrated"},
        {"file_name": "0012_c.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "calibrated"},
        {"file_name": "0013_d.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "not_calibrated",
         "spectra_reason": "target 1: RMS 0.40 px above 0.15 px; target 2: RMS 0.40 px above 0.15 px",
         "spectra_fix": "check the lamp exposure"},
        {"file_name": "0014_e.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "not_calibrated",
         "spectra_reason": "target 1: RMS 0.40 px above 0.15 px"},
        {"file_name": "0015_f.fits", "obstype": "OBJECT", "status": "reduced", "spectra_status": "waiting_for_lamp",
         "spectra_reason": no_lamp, "spectra_fix": "take a comparison lamp of this setup"},
        {"file_name": "0016_g.fits", "obstype": "OBJECT", "status": "unsupported",
         "error": "imaging frames are not reduced"},
    ]
    lines = spectra_summary(entries)
    assert lines[0] == "spectra:"
    by_file = {line.split(":")[0].strip(): line for line in lines[1:-1] if not line.startswith("    ")}
    assert set(by_file) == {"0010_a.fits", "0011_b.fits", "0012_c.fits", "0013_d.fits", "0014_e.fits",
                            "0015_f.fits", "0016_g.fits"}                       # OBJECT frames only
    assert by_file["0010_a.fits"] == "  0010_a.fits: calibrated"
    assert "    calibration: lamp 0274_Fe.fits: binning 1x2 vs 2x2" in lines
    assert by_file["0013_d.fits"] == ("  0013_d.fits: not_calibrated: target 1: RMS 0.40 px above 0.15 px; "
                                      "target 2: RMS 0.40 px above 0.15 px (fix: check the lamp exposure)")
    assert by_file["0015_f.fits"].endswith(no_lamp + " (fix: take a comparison lamp of this setup)")
    assert by_file["0016_g.fits"] == "  0016_g.fits: no spectra (unsupported): imaging frames are not reduced"
    # One cause of two targets and of two frames is one reason, counted per frame.
    assert lines[-1] == ("science frames: 7, calibrated 3, not calibrated 2, waiting for a lamp 1, no spectra 1 "
                         "(reasons: RMS 0.40 px above 0.15 px ×2; " + no_lamp + "; imaging frames are not reduced)")
    assert spectra_summary(entries[:1]) == []                                  # no science, no lines
