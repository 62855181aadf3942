"""The DynamoDB index of raw files and their products.

One table, keyed so that every request path is a GetItem or a Query:
  file item   pk=FILE#<file_id>  sk=FILE
              by_night       (night_pk=NIGHT#<night>, night_sk=<path below the night>)  list a night
              by_night_type  (type_pk=NIGHT#<night>#<OBSTYPE>, night_sk)          filter by type
              by_update      (night_pk, updated_sk=<updated_at>#<file_id>)       live changes
  night item  pk=NIGHTS      sk=<night>   (files = number of distinct raw files)
  master      pk=MASTER#<kind>#<group>  sk=<night>#<count>#<members hash>
              one item per master calibration version; the conditional put that
              creates it elects the one worker that builds it
  dead letter pk=DEADLETTERS  sk=<letter id>
              a message a queue gave up on, kept for the operator to redrive
              (state dead, then redriven, with a count of redrives)
              (functions/deadletters.py, functions/operations.py)
  version     pk=FILE#<file_id>  sk=VERSION#<n>   a re-reduction's version (versions.py)
  users, proposals, memberships, aliases, schedule: access.py
A file item's fields are declared in item.py (FILE_ITEM): the writes below refuse any
other, and the API serves its public ones. The file id is derived from the storage
location, so an event delivered twice, or two workers racing on it, land on the same item.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .item import FILE_TYPES, check_fields, public

MASTER_BUILDING = "building"
MASTER_READY = "ready"

NIGHTS_PK = "NIGHTS"
#: the night of a file whose key names none and whose header has no DATE-OBS
UNSORTED = "unsorted"
DEAD_LETTERS_PK = "DEADLETTERS"
DEAD_LETTER_DEAD = "dead"           # waiting for an operator
DEAD_LETTER_REDRIVEN = "redriven"   # sent back to its queue
FILE_SK = "FILE"
_KEY_ATTRS = ("pk", "sk", "night_pk", "night_sk", "type_pk", "updated_sk", "claim_token", "claim_until")

#: A position in a night's listing: (listing, night_sk, file_id), where the listing is
#: the index it pages through. It is what `list_files` returns for the next page and
#: takes back; the API hands it to clients only signed (functions/api/chalicelib/pagetoken.py).
Position = Tuple[str, str, str]
_LISTINGS = {"by_night": "night_pk", "by_night_type": "type_pk"}   # index -> its partition attribute
_FILE_ID = re.compile(r"[0-9A-Za-z_-]{1,64}")
_MAX_NIGHT_SK = 1024

# Change cursors are `updated_sk` values, `<UTC time>#<file id>`, or a UTC time alone
# (the floor `changes` keeps, or a client's own: the page starts from
# `new Date().toISOString()`, with milliseconds).
_CURSOR = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?Z(#[0-9A-Za-z_~-]{1,64})?")

# How far back a changes cursor is held, so that a write stamped just before a poll
# but committed just after it is still delivered (clients merge by file_id).
CHANGES_OVERLAP = timedelta(seconds=5)

_ser = TypeSerializer()
_de = TypeDeserializer()


def strip_keys(item: Dict[str, Any]) -> Dict[str, Any]:
    """An item without its table keys (pk, sk): what a reader is served."""
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}


def query_partition(client, table: str, pk: str, prefix: str = "") -> List[Dict[str, Any]]:
    """Every item of partition `pk` (whose sort key starts with `prefix`), in sort-key
    order, read consistently and page after page: the data layer's small partitions
    (a file's versions and line fits, a user's memberships)."""
    kwargs: Dict[str, Any] = dict(TableName=table, ConsistentRead=True)
    if prefix:
        kwargs.update(KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                      ExpressionAttributeValues=_encode({":pk": pk, ":p": prefix}))
    else:
        kwargs.update(KeyConditionExpression="pk = :pk", ExpressionAttributeValues=_encode({":pk": pk}))
    items: List[Dict[str, Any]] = []
    while True:
        resp = client.query(**kwargs)
        items += [_decode(i) for i in resp.get("Items", [])]
        if "LastEvaluatedKey" not in resp:
            return items
        kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]


class BadRequest(ValueError):
    """A caller's mistake (bad token, bad cursor); the API turns it into a 400."""


def file_id_for(bucket: str, key: str) -> str:
    """Stable, URL-safe id of a raw object: same location, same id."""
    return hashlib.sha1(f"{bucket}/{key}".encode("utf-8")).hexdigest()[:16]


def utcnow() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _to_plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the API speaks JSON."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_to_dynamo(v) for v in value]
    return value


def _encode(item: Dict[str, Any]) -> Dict[str, Any]:
    return {k: _ser.serialize(_to_dynamo(v)) for k, v in item.items() if v is not None}


def _decode(raw: Dict[str, Any]) -> Dict[str, Any]:
    return {k: _to_plain(_de.deserialize(v)) for k, v in raw.items()}


def public_view(item: Dict[str, Any]) -> Dict[str, Any]:
    """The item as the API serves it: its public fields (item.FILE_ITEM), with `error`
    and `products` always present (null / empty) so clients need not guess."""
    view = public(item)
    view.setdefault("error", None)
    view.setdefault("products", [])
    return view


def file_type(value: str) -> str:
    """A frame type as a caller may spell it (`comp`), checked against FILE_TYPES."""
    kind = value.strip().upper()
    if kind not in FILE_TYPES:
        raise BadRequest("type must be one of " + ", ".join(FILE_TYPES))
    return kind


def check_cursor(since: str) -> str:
    """A change cursor as `changes` takes it: empty (from the start), a cursor it
    returned, or a UTC time (`2024-05-01T12:00:00.000Z`); anything else is a BadRequest."""
    match = _CURSOR.fullmatch(since)
    if since and match:
        try:
            datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
        except ValueError:
            match = None
    if since and not match:
        raise BadRequest("since must be empty (from the start), a cursor this API returned, "
                         "or a UTC time such as 2024-05-01T12:00:00.000Z")
    return since


def plausible_file_id(file_id: str) -> bool:
    """The shape of a file id (file_id_for's), checked before it is used in a key."""
    return bool(_FILE_ID.fullmatch(file_id or ""))


def _start_key(listing: str, partition: str, position: Sequence[str]) -> Dict[str, Any]:
    """The ExclusiveStartKey a position stands for, built from its parts (never taken
    from a caller whole), once its shape is checked."""
    if not (isinstance(position, (list, tuple)) and len(position) == 3
            and all(isinstance(part, str) for part in position)):
        raise BadRequest("malformed page token")
    name, night_sk, file_id = position
    if name != listing:
        raise BadRequest("this page token belongs to another listing: ask again without 'next'")
    if not 0 < len(night_sk) <= _MAX_NIGHT_SK or not plausible_file_id(file_id):
        raise BadRequest("malformed page token")
    return _encode({"pk": f"FILE#{file_id}", "sk": FILE_SK, _LISTINGS[listing]: partition, "night_sk": night_sk})


def _position(listing: str, last_key: Optional[Dict[str, Any]]) -> Optional[Position]:
    if not last_key:
        return None
    key = _decode(last_key)
    if set(key) != {"pk", "sk", _LISTINGS[listing], "night_sk"} or not str(key["pk"]).startswith("FILE#"):
        raise RuntimeError(f"unexpected LastEvaluatedKey from {listing}: {sorted(key)}")
    return listing, key["night_sk"], key["pk"][len("FILE#"):]


def _master_key(kind: str, group: str, night: str, count: int, members_hash: str) -> Dict[str, Any]:
    return _encode({"pk": f"MASTER#{kind}#{group}", "sk": f"{night}#{count:04d}#{members_hash}"})


def _set_fields(fields: Dict[str, Any]) -> Dict[str, Any]:
    """UpdateItem arguments that set these fields, and remove those given as None."""
    names = {f"#f{i}": k for i, k in enumerate(fields)}
    values = {f":v{i}": v for i, v in enumerate(fields.values()) if v is not None}
    sets = [f"#f{i} = :v{i}" for i in range(len(fields)) if f":v{i}" in values]
    removes = [f"#f{i}" for i in range(len(fields)) if f":v{i}" not in values]
    expr = " ".join(part for part in ("SET " + ", ".join(sets) if sets else "",
                                      "REMOVE " + ", ".join(removes) if removes else "") if part)
    args = {"UpdateExpression": expr, "ExpressionAttributeNames": names}
    if values:
        args["ExpressionAttributeValues"] = _encode(values)
    return args


class FileIndex:
    """Reads and writes the index; handed its DynamoDB client and table name."""

    def __init__(self, client, table: str):
        self._db = client
        self._table = table

    # ---- writes -------------------------------------------------------------
    def record_file(self, fields: Dict[str, Any]) -> bool:
        """Write a raw file's item. Returns True when the file is new to the index.
        Its fields must be declared (item.FILE_ITEM): UndeclaredField otherwise.

        A new file is put and counted on its night in one transaction, so a
        redelivered event can neither duplicate the item nor count it twice.
        """
        check_fields(fields)
        now = utcnow()
        night, file_id = fields["night"], fields["file_id"]
        item = dict(fields)
        item.update(
            pk=f"FILE#{file_id}",
            sk=FILE_SK,
            night_pk=f"NIGHT#{night}",
            night_sk=fields.get("path") or fields["file_name"],
            type_pk=f"NIGHT#{night}#{fields.get('obstype') or 'UNKNOWN'}",
            updated_sk=f"{now}#{file_id}",
            updated_at=now,
        )
        item.setdefault("created_at", now)
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self._table, "Item": _encode(item),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Update": {"TableName": self._table,
                                "Key": _encode({"pk": NIGHTS_PK, "sk": night}),
                                "UpdateExpression": "ADD files :one SET night = :night, updated_at = :now",
                                "ExpressionAttributeValues": _encode({":one": 1, ":night": night, ":now": now})}},
                ]
            )
            return True
        except self._db.exceptions.TransactionCanceledException as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if not reasons or reasons[0].get("Code") != "ConditionalCheckFailed":
                raise
        existing = self.get_file(file_id) or {}
        if "created_at" in existing:
            item["created_at"] = existing["created_at"]
        self._db.put_item(TableName=self._table, Item=_encode(item))
        return False

    def update_file(self, file_id: str, fields: Dict[str, Any]) -> None:
        """Change some fields of an existing file item (and move it in the change feed)."""
        check_fields(fields)
        now = utcnow()
        fields = {**fields, "updated_at": now, "updated_sk": f"{now}#{file_id}"}
        self._db.update_item(TableName=self._table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}),
                             ConditionExpression="attribute_exists(pk)", **_set_fields(fields))

    def claim_file(self, file_id: str, token: str, lease_seconds: int) -> Optional[str]:
        """Become the one worker reducing this file (or renew the claim). None when
        claimed, else the time another live worker's claim runs out. A worker that dies
        loses its claim when the lease ends, so nothing waits for it forever."""
        now = datetime.now(timezone.utc)
        try:
            self._db.update_item(
                TableName=self._table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}),
                UpdateExpression="SET claim_token = :t, claim_until = :u",
                ConditionExpression="attribute_exists(pk) AND (attribute_not_exists(claim_until) OR "
                                    "claim_until < :now OR claim_token = :t)",
                ExpressionAttributeValues=_encode({":t": token, ":now": now.isoformat(),
                                                   ":u": (now + timedelta(seconds=lease_seconds)).isoformat()}))
            return None
        except self._db.exceptions.ConditionalCheckFailedException:
            item = self.get_file(file_id)
            if item is None:
                return None     # no such file: nothing to hold, and the task will find nothing
            return item.get("claim_until") or now.isoformat()

    def release_file(self, file_id: str, token: str) -> None:
        try:
            self._db.update_item(
                TableName=self._table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}),
                UpdateExpression="REMOVE claim_token, claim_until", ConditionExpression="claim_token = :t",
                ExpressionAttributeValues=_encode({":t": token}))
        except self._db.exceptions.ConditionalCheckFailedException:
            pass    # the lease ran out and another worker holds it now

    # ---- master calibrations --------------------------------------------------
    def claim_master(self, kind: str, group: str, night: str, count: int, members_hash: str,
                     lease_seconds: int = 120) -> bool:
        """Try to become the builder of one master version; False if it exists or is
        being built by a live builder (a builder that died loses its claim after the lease)."""
        now = datetime.now(timezone.utc)
        item = {**_master_key(kind, group, night, count, members_hash),
                **_encode({"kind": kind, "group": group, "night": night, "count": count, "status": MASTER_BUILDING,
                           "lease_until": (now + timedelta(seconds=lease_seconds)).isoformat()})}
        try:
            self._db.put_item(
                TableName=self._table, Item=item,
                ConditionExpression="attribute_not_exists(pk) OR (#s = :building AND lease_until < :now)",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_encode({":building": MASTER_BUILDING, ":now": now.isoformat()}))
            return True
        except self._db.exceptions.ConditionalCheckFailedException:
            return False

    def renew_master(self, kind: str, group: str, night: str, count: int, members_hash: str,
                     lease_seconds: int) -> None:
        """Extend a live builder's lease (a build of many full frames outlasts one)."""
        until = (datetime.now(timezone.utc) + timedelta(seconds=lease_seconds)).isoformat()
        self._db.update_item(
            TableName=self._table, Key=_master_key(kind, group, night, count, members_hash),
            UpdateExpression="SET lease_until = :u", ConditionExpression="#s = :building",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_encode({":u": until, ":building": MASTER_BUILDING}))

    def finish_master(self, kind: str, group: str, night: str, count: int, members_hash: str,
                      fields: Dict[str, Any]) -> None:
        self._db.update_item(TableName=self._table, Key=_master_key(kind, group, night, count, members_hash),
                             **_set_fields({**fields, "status": MASTER_READY}))

    def release_master(self, kind: str, group: str, night: str, count: int, members_hash: str) -> None:
        """Give up a claim (the build failed) so a retry can take it at once."""
        self._db.delete_item(
            TableName=self._table, Key=_master_key(kind, group, night, count, members_hash),
            ConditionExpression="#s = :building", ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_encode({":building": MASTER_BUILDING}))

    def get_master(self, kind: str, group: str, night: str, count: int, members_hash: str) -> Optional[Dict[str, Any]]:
        raw = self._db.get_item(TableName=self._table, ConsistentRead=True,
                                Key=_master_key(kind, group, night, count, members_hash)).get("Item")
        return _decode(raw) if raw else None

    def masters(self, kind: str, group: str, first_night: str, last_night: str) -> List[Dict[str, Any]]:
        """Ready master versions of a group made on nights first..last, newest night and
        most frames first: one Query, whatever the size of the archive."""
        items: List[Dict[str, Any]] = []
        # Strongly consistent: a frame reduced the instant its master is finished must
        # see it (the base table offers that; a GSI never does).
        kwargs = dict(TableName=self._table, ScanIndexForward=False, ConsistentRead=True,
                      KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                      FilterExpression="#s = :ready", ExpressionAttributeNames={"#s": "status"},
                      ExpressionAttributeValues=_encode({":pk": f"MASTER#{kind}#{group}", ":a": first_night,
                                                         ":b": last_night + "#~", ":ready": MASTER_READY}))
        while True:
            resp = self._db.query(**kwargs)
            items += [_decode(i) for i in resp.get("Items", [])]
            if not resp.get("LastEvaluatedKey"):
                return items
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]

    # ---- dead letters ---------------------------------------------------------
    def record_dead_letter(self, entry: Dict[str, Any]) -> None:
        """Keep a dead-lettered message, `state` dead (`entry["id"]` names it: the same
        message dead-lettered again, after a redrive or handled twice, is the same
        entry and keeps its count of redrives)."""
        fields = {k: v for k, v in entry.items() if k != "id"}
        self._db.update_item(TableName=self._table, Key=_encode({"pk": DEAD_LETTERS_PK, "sk": entry["id"]}),
                             **_set_fields({**fields, "id": entry["id"], "state": DEAD_LETTER_DEAD,
                                            "redriven_at": None}))

    def dead_letters(self, include_redriven: bool = False) -> List[Dict[str, Any]]:
        """The kept dead letters (and, with `include_redriven`, those already sent
        again), oldest first: one Query however large the archive."""
        kwargs = dict(TableName=self._table, ConsistentRead=True, KeyConditionExpression="pk = :pk",
                      ExpressionAttributeValues=_encode({":pk": DEAD_LETTERS_PK}))
        items: List[Dict[str, Any]] = []
        while True:
            resp = self._db.query(**kwargs)
            items += [{k: v for k, v in _decode(i).items() if k not in ("pk", "sk")} for i in resp.get("Items", [])]
            if not resp.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        if not include_redriven:
            items = [i for i in items if i.get("state") == DEAD_LETTER_DEAD]
        return sorted(items, key=lambda e: (e.get("at") or "", e["id"]))

    def mark_redriven(self, letter_id: str) -> int:
        """A dead letter sent back to its queue: its state and time, and how many times
        it has been (returned)."""
        resp = self._db.update_item(
            TableName=self._table, Key=_encode({"pk": DEAD_LETTERS_PK, "sk": letter_id}),
            UpdateExpression="SET #s = :s, redriven_at = :at ADD redrives :one", ReturnValues="UPDATED_NEW",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=_encode({":s": DEAD_LETTER_REDRIVEN, ":at": utcnow(), ":one": 1}))
        return int(_decode(resp["Attributes"]).get("redrives", 1))

    # ---- reads --------------------------------------------------------------
    def get_file(self, file_id: str) -> Optional[Dict[str, Any]]:
        raw = self._db.get_item(
            TableName=self._table, Key=_encode({"pk": f"FILE#{file_id}", "sk": FILE_SK}), ConsistentRead=True
        ).get("Item")
        return _decode(raw) if raw else None

    def list_nights(self, limit: int = 100) -> List[Dict[str, Any]]:
        """Nights newest first, and `unsorted` (files whose night could not be told) last:
        it sorts after every date, and the page opens on the first night listed."""
        resp = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=_encode({":pk": NIGHTS_PK}),
            ScanIndexForward=False,
            Limit=limit,
        )
        nights = [{k: v for k, v in _decode(i).items() if k not in _KEY_ATTRS} for i in resp.get("Items", [])]
        return [n for n in nights if n["night"] != UNSORTED] + [n for n in nights if n["night"] == UNSORTED]

    def list_files(self, night: str, obstype: Optional[str] = None, limit: int = 100,
                   token: Optional[Sequence[str]] = None) -> Tuple[List[Dict[str, Any]], Optional[Position]]:
        """One page of a night's files (of one type) in file-name (observation) order,
        and the position of the next page (None on the last). `token` is such a
        position, handed back; one that is not of this listing is a BadRequest."""
        if obstype:
            listing, partition = "by_night_type", f"NIGHT#{night}#{obstype.upper()}"
        else:
            listing, partition = "by_night", f"NIGHT#{night}"
        kwargs = dict(TableName=self._table, IndexName=listing, KeyConditionExpression=f"{_LISTINGS[listing]} = :p",
                      ExpressionAttributeValues=_encode({":p": partition}), Limit=limit)
        if token is not None:
            kwargs["ExclusiveStartKey"] = _start_key(listing, partition, token)
        resp = self._db.query(**kwargs)
        files = [public_view(_decode(i)) for i in resp.get("Items", [])]
        return files, _position(listing, resp.get("LastEvaluatedKey"))

    def changes(self, night: str, since: str = "", limit: int = 200,
                now: Optional[datetime] = None, obstype: Optional[str] = None) -> Tuple[List[Dict[str, Any]], str]:
        """Files of a night (of one type) updated after `since`, oldest first, and the
        next cursor. With a type, a page holds its files among the `limit` changes
        read, and the cursor moves over the others as well: the cost is the same."""
        since = check_cursor(since)
        kwargs = dict(TableName=self._table, IndexName="by_update", Limit=limit,
                      KeyConditionExpression="night_pk = :p AND updated_sk > :s",
                      ExpressionAttributeValues=_encode({":p": f"NIGHT#{night}", ":s": since or " "}))
        resp = self._db.query(**kwargs)
        items = [_decode(i) for i in resp.get("Items", [])]
        if not items:
            return [], since
        wanted = [public_view(i) for i in items
                  if not obstype or i.get("type_pk") == f"NIGHT#{night}#{obstype.upper()}"]
        last = items[-1]["updated_sk"]
        if resp.get("LastEvaluatedKey"):
            return wanted, last  # more to come: no overlap needed
        floor = ((now or datetime.now(timezone.utc)) - CHANGES_OVERLAP).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        cursor = max(since, min(last, floor))
        return wanted, cursor


def iter_all_files(index: FileIndex, night: str, obstype: Optional[str] = None,
                   page_size: int = 200) -> Iterable[Dict[str, Any]]:
    """Every file of a night (of one type), page by page."""
    position = None
    while True:
        files, position = index.list_files(night, obstype, limit=page_size, token=position)
        yield from files
        if position is None:
            return
