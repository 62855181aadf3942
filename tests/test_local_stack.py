"""The local stack's own machinery in front of moto: what it changes must not change
what DynamoDB answers."""
from __future__ import annotations

from moto.dynamodb.models.table import Table

from golive_data.index import FileIndex, iter_all_files
from golive_data import versions


def _answers(index: FileIndex, client, table: str) -> list:
    nights = [f"2029-02-{d:02d}" for d in range(1, 4)]
    out = [
        [f["file_id"] for f in iter_all_files(index, night, obstype, page_size=7)]     # GSI, paged
        for night in nights for obstype in (None, "OBJECT", "BIAS")
    ]
    feed = index.changes(nights[1], "", limit=5)                                       # GSI, range condition
    out += [feed[0], index.changes(nights[1], feed[1], limit=50)[0]]
    out.append(index.changes(nights[1], "", limit=50, obstype="BIAS")[0])
    out.append(index.list_nights(limit=50))                                            # table, newest first
    out.append(index.masters("BIAS", "RED_SP_2x2_R03.89_G01.48", "2029-01-20", "2029-02-03"))  # table, BETWEEN
    out.append(versions.list_versions(client, table, "qs-0005"))                      # table, begins_with
    out.append(index.get_file("qs-0007"))
    return out


def test_queries_answer_the_same_with_their_candidates_handed_in(system):
    """infra/local/stack.fast_queries gives a query its partition (or every item,
    unsorted) instead of moto's sorted whole table: the answers, paged and reversed,
    are those of moto's own way."""
    client = system.stack.client("dynamodb")
    table = system.stack.definition["index_table"]["name"]
    index = FileIndex(client, table)
    for n in range(30):
        index.record_file({"file_id": f"qs-{n:04d}", "night": f"2029-02-{1 + n % 3:02d}",
                           "file_name": f"{n:04d}_{'zero' if n % 4 == 0 else 'obj'}.fits",
                           "obstype": "BIAS" if n % 4 == 0 else "OBJECT", "status": "indexed",
                           "raw_bucket": "b", "raw_key": f"k/{n}"})
    fast = Table.query
    assert getattr(fast, "_candidates_given", False), "the local stack did not install its query path"
    answered = _answers(index, client, table)
    Table.query = fast.original
    try:
        expected = _answers(index, client, table)
    finally:
        Table.query = fast
    assert answered == expected
    assert sum(len(ids) for ids in answered[:9:3]) == 30      # every file, once, over the three nights
