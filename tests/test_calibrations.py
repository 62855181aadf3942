"""Calibration grouping and choice: pure functions, no storage."""
import pytest

from functions.core import calibrations as cal

RED = {"technique": "Spectroscopy", "camera": "RED", "binning": "2x2", "obstype": "OBJECT", "gain": 1.48,
       "rdnoise": 3.89, "configuration": "RED_400_M2_GG455_0.45LS_2x2_SPECTROSCOPIC-2X2"}


def test_groups_follow_goodman_pipeline_naming():
    assert cal.bias_group(RED) == "RED_SP_2x2_R03.89_G01.48"
    assert cal.flat_group(RED) == RED["configuration"]
    assert cal.master_file_name(cal.BIAS, "RED_SP_2x2_R03.89_G01.48", "2024-03-14", 10) == \
        "master_bias_RED_SP_2x2_R03.89_G01.48_2024-03-14_n10.fits"


@pytest.mark.parametrize("change, words", [
    ({"technique": "Imaging"}, "imaging"),
    ({"camera": "UNKNOWN"}, "unknown camera"),
    ({"binning": None}, "binning"),
    ({"obstype": "FOCUS"}, "FOCUS"),
    ({"gain": None}, "GAIN"),
])
def test_frames_the_reduction_cannot_handle_say_why(change, words):
    assert cal.reason_not_reducible(RED) is None
    assert words in cal.reason_not_reducible({**RED, **change})


def test_members_hash_names_the_set_not_the_order():
    assert cal.members_hash(["b", "a", "c"]) == cal.members_hash(["c", "b", "a"])
    assert cal.members_hash(["a", "b"]) != cal.members_hash(["a", "b", "c"])


def _m(night, count, sk_tail="x"):
    return {"night": night, "count": count, "sk": f"{night}#{count:04d}#{sk_tail}"}


def test_same_night_with_most_frames_first():
    got = cal.choose_master([_m("2024-03-13", 30), _m("2024-03-14", 10), _m("2024-03-14", 12)], "2024-03-14")
    assert (got["night"], got["count"]) == ("2024-03-14", 12)


def test_else_the_nearest_earlier_night():
    got = cal.choose_master([_m("2024-03-10", 30), _m("2024-03-12", 10)], "2024-03-14")
    assert got["night"] == "2024-03-12"


def test_never_a_later_night_and_none_when_nothing_fits():
    assert cal.choose_master([_m("2024-03-15", 10)], "2024-03-14") is None
    assert cal.choose_master([], "2024-03-14") is None
    assert cal.window_start("2024-03-01", 7) == "2024-02-23"


def _lamp(name, date_obs):
    return {"file_name": name, "file_id": name, "date_obs": date_obs}


def test_the_lamp_nearest_in_time_calibrates_a_frame_before_or_after_it():
    before, after = _lamp("0021_arc.fits", "2024-03-15T01:00:00.000"), _lamp("0025_arc.fits", "2024-03-15T01:30:00.000")
    assert cal.choose_lamp([before, after], "2024-03-15T01:10:00.000") is before
    assert cal.choose_lamp([after, before], "2024-03-15T01:20:00.000") is after
    # a tie goes to the earlier lamp, whatever order the index gives them in
    assert cal.choose_lamp([after, before], "2024-03-15T01:15:00.000") is before
    assert cal.choose_lamp([], "2024-03-15T01:15:00.000") is None
    # without a time (a header with no DATE-OBS) the choice is still deterministic
    assert cal.choose_lamp([after, before], None) is before
    assert cal.choose_lamp([_lamp("x.fits", None), after], "2024-03-15T01:40:00.000") is after


# ------------------------------------------------------------------ which calibrations fit a frame
def _real(name):
    from astropy.io import fits

    from .conftest import FIXTURES

    text = (FIXTURES / "real_headers" / f"{name}.hdr").read_bytes().decode("ascii", "replace")
    return fits.Header.fromstring(text)


def _classified(header, **cards):
    from functions.core.classify import classify

    h = header.copy()
    for k, v in cards.items():
        h[k] = v
    return classify(h)


def test_a_lamp_of_another_binning_slit_roi_and_wavmode_fits_and_says_what_differs():
    """The real Blue-night case: 930 at custom angles, science 2x2 1.0" 'Custom', arcs 1x2 0.45" '400WD'."""
    arc_h = _real("jsreding_930_20180203__0274_Fe_ZZCeti_930_blue_long")
    arc = _classified(arc_h, WAVMODE="400WD")
    science = _classified(arc_h, OBSTYPE="OBJECT", OBJECT="WD 0123", CCDSUM="2 2", SLIT='1.0" long slit',
                          WAVMODE="Custom", ROI="Spectroscopic 2x2")
    assert arc["configuration"] != science["configuration"]
    ok, notes = cal.compare_setup("COMP", science, arc)
    assert ok, notes
    assert notes == ["binning 1x2 vs 2x2", "slit 0.45LS vs 1LS", "roi USER-DEFINED vs SPECTROSCOPIC-2X2",
                     "wavmode 400WD vs Custom"]
    # the red arcs of the same afternoon have the GG385 filter: not the same setup
    red = _classified(_real("jsreding_930_20180203__0277_Fe_ZZCeti_930_red_long"))
    ok, why = cal.compare_setup("COMP", science, red)
    assert not ok and "filter2" in why[0]


@pytest.mark.parametrize("cards, fits, words", [
    ({"GRT_ANG": 13.04}, True, None),  # within 0.05 deg
    ({"GRT_ANG": 13.2}, False, "angles differ by 0.200"),
    ({"CAM_ANG": 23.8}, False, "angles differ"),
    ({"GRATING": "SYZY_400"}, False, "grating"),
    ({"INSTCONF": "Blue"}, False, "camera"),
])
def test_angles_within_a_tolerance_and_the_rest_exactly(cards, fits, words):
    arc_h = _real("jsreding_930_20180203__0274_Fe_ZZCeti_930_blue_long")
    science = _classified(arc_h, OBSTYPE="OBJECT")
    ok, notes = cal.compare_setup("COMP", science, _classified(arc_h, **cards))
    assert ok is fits
    if words:
        assert words in notes[0]


def test_same_preset_mode_always_agrees():
    a = {"camera": "RED", "grating": "400", "filter2": "GG455", "mode": "M2", "grt_angle": 7.45, "cam_angle": 16.05}
    b = {**a, "grt_angle": 7.54, "cam_angle": 16.14}
    assert cal.compare_setup("COMP", a, b, angle_tolerance=0.05) == (True, [])


def test_a_flat_fits_through_another_slit_only():
    flat_h = _real("jsreding_930_20180203__0040_QuartzFlat_930_blue")
    flat = _classified(flat_h)
    science = _classified(flat_h, OBSTYPE="OBJECT", SLIT='0.45" long slit')
    ok, notes = cal.compare_setup("FLAT", science, flat)
    assert ok and len(notes) == 1 and notes[0].startswith("slit ")
    other_binning = _classified(flat_h, OBSTYPE="OBJECT", CCDSUM="3 3")
    ok, why = cal.compare_setup("FLAT", other_binning, flat)
    assert not ok and "binning" in why[0]


def test_ranking_prefers_the_night_then_exact_then_nearest_in_time():
    base = {"camera": "RED", "grating": "400", "filter2": "GG455", "mode": "M2", "grt_angle": 7.5, "cam_angle": 16.1,
            "binning": "2x2", "slit": "1LS", "roi": "SPECTROSCOPIC-2X2", "wavmode": "400 M2"}
    science = {**base, "night": "2024-03-14", "date_obs": "2024-03-15T02:00:00.000"}
    near_other_slit = {**base, "slit": "0.45LS", "night": "2024-03-14", "date_obs": "2024-03-15T02:01:00",
                       "file_name": "a.fits"}
    far_exact = {**base, "night": "2024-03-14", "date_obs": "2024-03-15T05:00:00", "file_name": "b.fits"}
    other_night = {**base, "night": "2024-03-13", "date_obs": "2024-03-14T02:00:00", "file_name": "c.fits"}
    wrong = {**base, "grating": "600", "night": "2024-03-14", "date_obs": "2024-03-15T02:00:00",
             "file_name": "d.fits"}
    ranked = cal.rank_calibrations("COMP", science, [other_night, wrong, near_other_slit, far_exact])
    assert [c["file_name"] for c, _ in ranked] == ["b.fits", "a.fits", "c.fits"]
    assert ranked[1][1] == ["slit 0.45LS vs 1LS"]


def test_nights_of_the_window_nearest_first():
    assert cal.nights_from("2024-03-01", 2) == ["2024-02-29", "2024-02-28"]
    assert cal.nights_from("2024-12-31", 2, step=1) == ["2025-01-01", "2025-01-02"]
    assert cal.nights_from("2024-03-01", 0) == []
