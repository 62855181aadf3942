"""Line fits kept per file (golive_data/linefits.py) on moto's DynamoDB: newest kept up
to MOST_PER_FILE, the curve read back as written, removal by id."""
import boto3
import pytest
from moto import mock_aws

from golive_data import linefits


@pytest.fixture
def table():
    with mock_aws():
        db = boto3.client("dynamodb", region_name="us-east-1")
        db.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}],
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}])
        yield db


def test_fits_are_kept_newest_last_up_to_the_limit_and_removed_by_id(table, monkeypatch):
    monkeypatch.setattr(linefits, "MOST_PER_FILE", 5)
    curve = {"x": [6500.0, 6562.8, 6625.0], "y": [1.0, 0.55, 1.0]}
    made = [linefits.record_fit(table, "t", "f1", {"centre": 6562.0 + i, "curve": curve}, "ana") for i in range(8)]
    linefits.record_fit(table, "t", "f2", {"centre": 1.0, "curve": curve}, "ben")
    kept = linefits.list_fits(table, "t", "f1")
    assert [f["centre"] for f in kept] == [6565.0, 6566.0, 6567.0, 6568.0, 6569.0]
    assert kept[-1]["curve"] == curve and kept[-1]["by"] == "ana" and kept[-1]["file_id"] == "f1"
    assert linefits.delete_fit(table, "t", "f1", made[-1]["fit_id"])
    assert not linefits.delete_fit(table, "t", "f1", made[0]["fit_id"])   # trimmed already
    assert [f["centre"] for f in linefits.list_fits(table, "t", "f1")] == [6565.0, 6566.0, 6567.0, 6568.0]
    assert len(linefits.list_fits(table, "t", "f2")) == 1
