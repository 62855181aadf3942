"""benchmarks/latency.py's arithmetic and plans, without the stack: the stages between the
timeline's times, the growth of a series, the API watcher's notes, the series' frames."""
from __future__ import annotations

import datetime as dt

import pytest

from benchmarks import latency


def test_stages_add_up_to_the_total_and_a_missing_time_is_not_recorded():
    names = ("close", "detected", "uploaded", "event", "indexed", "started", "reduced", "extracted", "calibrated",
             "visible")
    times = {name: 100.0 + i * 0.5 for i, name in enumerate(names)}
    times["upload_from"] = times["detected"]
    stages = latency.stages_of(times)
    assert sum(stages[key] for key, *_ in latency.STAGES) == pytest.approx(stages["total"]) == 4.5
    del times["started"]
    stages = latency.stages_of(times)
    assert stages["queue"] is None and stages["reduce"] is None and stages["total"] == pytest.approx(4.5)
    assert latency.summary([None, None]) == {"n": 0}


def test_timeline_times():
    t = dt.datetime(2026, 12, 7, 5, 1, 2, 123456, tzinfo=dt.timezone.utc).timestamp()
    assert latency.epoch("2026-12-07T05:01:02.123456Z") == pytest.approx(t)
    assert latency.epoch("2026-12-07T05:01:02.123Z") == pytest.approx(t - 0.000456)
    assert latency.epoch(None) is None and latency.epoch("soon") is None


def test_growth_compares_the_last_quarter_with_the_first():
    assert latency.growth([1.0] * 4 + [1.5] * 4) == pytest.approx(0.5)
    assert latency.growth([2.0, 1.0, 1.0]) is None


def test_the_watcher_keeps_the_timeline_shown_with_the_first_calibrated_spectrum():
    w = latency.ApiWatcher("http://unused", "2024-05-01", http=None)
    first = {"file_name": "a.fits", "status": "reduced", "products": [{"kind": "calibrated"}],
             "timeline": {"calibrated_at": "2026-12-07T05:00:00.000000Z"}}
    again = {**first, "timeline": {"calibrated_at": "2026-12-07T05:00:09.000000Z",
                                   "cleaned_at": "2026-12-07T05:00:10.000000Z"}}
    w.note([{"file_name": "a.fits", "status": "reducing", "products": []}], 1.0)
    w.note([first], 2.0)
    w.note([again], 3.0)
    assert w.seen["listed"]["a.fits"] == 1.0 and w.seen["visible"]["a.fits"] == 2.0
    assert w.seen["final"]["a.fits"] == 2.0 and w.seen["cleaned_visible"]["a.fits"] == 3.0
    assert w.at_visible["a.fits"] is first and w.items["a.fits"] is again


def test_series_frames_one_target_both_readouts_one_cadence_apart():
    calibrations, phases = latency.series_plans(seed=7, night="2024-07-01", minutes=1)
    kinds = [f.kind for f in calibrations.frames]
    assert kinds.count("bias") == kinds.count("flat") == 2 * latency.CAL_FRAMES and kinds.count("comp") == 2
    names = [f.filename for f in calibrations.frames] + [f.filename for _, p, _ in phases for f in p.frames]
    assert len(set(names)) == len(names)
    (_, full, full_cadence), (_, roi, roi_cadence) = phases
    assert (len(full.frames), len(roi.frames)) == (3, 6)
    assert {f.geometry.shape for f in full.frames} == {(948, 2071)}
    assert {f.geometry.shape for f in roi.frames} == {(200, 2071)}
    frames = full.frames + roi.frames
    assert {f.object for f in frames} == {"EG21"}
    gaps = [(b.start - a.start).total_seconds() for a, b in zip(frames, frames[1:])]
    assert gaps == [full_cadence] * 2 + [roi_cadence] * 6


def test_the_sweep_runs_on_the_aws_schedule():
    assert latency.aws_sweep_seconds({"consistency_function": {"schedule": "rate(10 minutes)"}}) == 600
    assert latency.aws_sweep_seconds({}) == 600


def test_the_stack_counts_what_is_asked_of_it(system, s3):
    """The benchmarks' request figures (and the cost model's counts): per service and
    operation, a query per index or partition, with moto's seconds and the bytes."""
    from golive_data.index import FileIndex

    index = FileIndex(system.stack.client("dynamodb"), system.stack.definition["index_table"]["name"])

    def measure():
        before = system.stack.request_stats()
        s3.put_object(Bucket=system.raw_bucket, Key="unlisted/requests-test.txt", Body=b"x" * 1000)
        s3.get_object(Bucket=system.raw_bucket, Key="unlisted/requests-test.txt")["Body"].read()
        index.get_file("no-such-file")
        index.list_files("2031-01-01", "OBJECT")
        index.masters("BIAS", "RED_SP_2x2_R03.89_G01.48", "2030-12-25", "2031-01-01")
        after = system.stack.request_stats()
        return before, after, {key: after.get(key, {}).get("requests", 0) - before.get(key, {}).get("requests", 0)
                               for key in set(after) | set(before)}

    # The stack is shared with the session's other tests: work they left behind (a late
    # flux calibration looking for a standard, the consistency sweep) counts too. Exact
    # counts are asked of a quiet window; a counter that counts twice or not at all never
    # gives one.
    wanted = {"dynamodb GetItem": 1, "dynamodb Query by_night_type": 1, "dynamodb Query table MASTER#": 1}
    for _ in range(5):
        system.wait_idle()
        before, after, grew = measure()
        if all(grew.get(key, 0) == n for key, n in wanted.items()):
            break
    assert {key: grew.get(key, 0) for key in wanted} == wanted, sorted(after)
    assert grew["s3 PUT"] >= 1 and grew["s3 GET"] >= 1
    assert after["s3 GET"]["bytes"] - before.get("s3 GET", {}).get("bytes", 0) >= 1000
    assert all(v["seconds"] >= 0 for v in after.values())
