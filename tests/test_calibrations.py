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
