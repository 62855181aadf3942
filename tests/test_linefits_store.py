"""Line fits kept per file (golive_data/linefits.py) in the local stack's index table:
newest kept up to MOST_PER_FILE, the curve read back as written, removal by id."""
import uuid

from golive_data import linefits
from golive_data.settings import Settings


def test_fits_are_kept_newest_last_up_to_the_limit_and_removed_by_id(system, monkeypatch):
    table, db = Settings.from_env().index_table, system.stack.client("dynamodb")
    monkeypatch.setattr(linefits, "MOST_PER_FILE", 5)
    f1, f2 = f"fits-{uuid.uuid4().hex[:8]}", f"fits-{uuid.uuid4().hex[:8]}"
    curve = {"x": [6500.0, 6562.8, 6625.0], "y": [1.0, 0.55, 1.0]}
    made = [linefits.record_fit(db, table, f1, {"centre": 6562.0 + i, "curve": curve}, "ana") for i in range(8)]
    linefits.record_fit(db, table, f2, {"centre": 1.0, "curve": curve}, "ben")
    kept = linefits.list_fits(db, table, f1)
    assert [f["centre"] for f in kept] == [6565.0, 6566.0, 6567.0, 6568.0, 6569.0]
    assert kept[-1]["curve"] == curve and kept[-1]["by"] == "ana" and kept[-1]["file_id"] == f1
    assert linefits.delete_fit(db, table, f1, made[-1]["fit_id"])
    assert not linefits.delete_fit(db, table, f1, made[0]["fit_id"])   # trimmed already
    assert [f["centre"] for f in linefits.list_fits(db, table, f1)] == [6565.0, 6566.0, 6567.0, 6568.0]
    assert len(linefits.list_fits(db, table, f2)) == 1
