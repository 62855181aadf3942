"""Which proposal a frame belongs to, as real headers spell it, and who may see it
(golive_data/access.py)."""
from datetime import datetime, timezone

import pytest

from golive_data.access import (AccessError, Principal, Resolver, can_read, normalise_proposal, proposal_id,
                                schedule_bound)

NOW = datetime(2024, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("raw, expected", [
    ("SO2017A-016", "SO2017A-016"),
    ("S02016B-104", "SO2016B-104"),        # a zero written for the O
    ("so2018a-011 ", "SO2018A-011"),
    ("N188 - Hermes", "N188-HERMES"),      # the same proposal on consecutive nights
    ("N188 Hermes", "N188-HERMES"),
    ("UNC-Clemens", "UNC-CLEMENS"),
    ("SOAR Engineering", "SOAR-ENGINEERING"),
    ("SO2018A_011", "SO2018A-011"),
    ("", None), ("   ", None), (None, None), ("N/A", None), ("none", None), ("-", None),
])
def test_real_proposal_spellings_normalise(raw, expected):
    assert normalise_proposal(raw) == expected


def test_a_proposal_id_must_look_like_one():
    assert proposal_id(" so2024a-001") == "SO2024A-001"
    for bad in ("", "  ", "a" * 80, "SO2024A-001; drop", "<script>"):
        with pytest.raises(AccessError):
            proposal_id(bad)


def test_schedule_bounds_run_across_midnight_ut():
    assert schedule_bound("2024-03-14", "23:10") == "2024-03-14T23:10:00"
    assert schedule_bound("2024-03-14", "03:40") == "2024-03-15T03:40:00"
    assert schedule_bound("2024-03-14", "2024-03-15T05:00:00Z") == "2024-03-15T05:00:00"
    for bad in ("25:00", "soon", ""):
        with pytest.raises(AccessError):
            schedule_bound("2024-03-14", bad)
    with pytest.raises(AccessError):
        schedule_bound("14/03/2024", "23:00")


RESOLVER = Resolver(
    aliases={"N188-HERMES": "SO2018A-N188", "UNC-CLEMENS": "SO2018A-UNC"},
    schedule=({"night": "2024-03-14", "start": "2024-03-14T23:00:00", "end": "2024-03-15T03:00:00",
               "proposal": "SO2024A-001"},
              {"night": "2024-03-14", "start": "2024-03-15T03:00:00", "end": "2024-03-15T09:00:00",
               "proposal": "SO2024A-002"}))


def _frame(header="", date_obs="2024-03-15T01:00:00.5", obstype="OBJECT"):
    return {"obstype": obstype, "proposal_header": header, "date_obs": date_obs}


def test_the_header_then_the_alias_then_the_schedule_decide():
    assert RESOLVER.resolve(_frame("S02016B-104")).proposal == "SO2016B-104"
    assert RESOLVER.resolve(_frame("SO2016B-104")).source == "header"
    assert RESOLVER.resolve(_frame("N188 Hermes")).proposal == "SO2018A-N188"
    assert RESOLVER.resolve(_frame("N188 - Hermes")).source == "alias"
    assert RESOLVER.resolve(_frame("")).proposal == "SO2024A-001"
    assert RESOLVER.resolve(_frame("", "2024-03-15T03:00:00")).proposal == "SO2024A-002"   # end is exclusive
    assert RESOLVER.resolve(_frame(None, "2024-03-15T04:00:00")).source == "schedule"
    unknown = RESOLVER.resolve(_frame("", "2024-03-15T10:00:00"))
    assert unknown.proposal is None and unknown.source == "unknown" and "staff only" in unknown.note
    assert RESOLVER.resolve(_frame("", None)).source == "unknown"
    assert RESOLVER.resolve(_frame("SO2024A-001", obstype="COMP")).source == "calibration"


ANA = Principal("ana", proposals=frozenset({"SO2024A-001"}))
BEN = Principal("ben", proposals=frozenset({"SO2024A-002"}), pi_of=frozenset({"SO2024A-002"}))
NOBODY = Principal("carl")
STAFF = Principal("sam", staff=True)


@pytest.mark.parametrize("who, frame, visible", [
    (ANA, _frame("SO2024A-001"), True),
    (BEN, _frame("SO2024A-001"), False),
    (NOBODY, _frame("SO2024A-001"), False),
    (STAFF, _frame("SO2024A-001"), True),
    (BEN, _frame(""), False),                                  # the schedule says SO2024A-001
    (ANA, _frame(""), True),
    (ANA, _frame("", "2024-03-15T10:00:00"), False),           # unknown: staff only
    (STAFF, _frame("", "2024-03-15T10:00:00"), True),
    (NOBODY, _frame("SO2024A-001", obstype="BIAS"), True),     # calibrations: everyone signed in
    (NOBODY, _frame("", obstype="MASTER_FLAT"), True),
    (NOBODY, _frame("", obstype="UNKNOWN"), False),
    (BEN, _frame("SO2024A-001", "2023-06-02T00:00:00"), True),  # the proprietary period is over
    (BEN, _frame("SO2024A-001", "2023-06-02T00:00:01"), False),
    (BEN, _frame("SO2024A-001", None), False),                 # no DATE-OBS: never released
])
def test_who_sees_what(who, frame, visible):
    assert can_read(who, frame, RESOLVER.resolve(frame), NOW, 365) is visible


def test_pis_and_staff_manage_a_proposal():
    assert BEN.may_manage("SO2024A-002") and not BEN.may_manage("SO2024A-001")
    assert STAFF.may_manage("ANYTHING") and not ANA.may_manage("SO2024A-001")
    assert BEN.public()["role"] == "pi" and ANA.public()["role"] == "observer" and NOBODY.public()["role"] == "user"


def test_the_api_and_the_core_agree_on_what_is_reduced_again():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "api"))
    from functions.services import TASK_KEY

    app = (Path(__file__).resolve().parents[1] / "functions" / "api" / "app.py").read_text()
    assert f'REDUCE_TASK_KEY = "{TASK_KEY}"' in app
