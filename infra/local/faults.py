"""Faults the local stack can inject, so tests prove that the system converges
rather than hope it does: an outage of S3 and DynamoDB (every request refused with
503, as a region in trouble answers), and a lagging GSI (index queries answered as
DynamoDB may answer them on AWS: from a copy of the table some seconds old).

Nothing here is reachable from the functions or the API: the switches live on the
local stack's server object, and are off unless a test turns them on.
"""
from __future__ import annotations

import io
import json
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from moto.core import DEFAULT_ACCOUNT_ID

_DDB_WRITES = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")
_OUTAGE_S3 = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable</Code>"
              b"<Message>injected outage</Message></Error>")
_OUTAGE_DDB = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                          "message": "injected outage"}).encode()


def service_of(environ) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target.startswith("DynamoDB_"):
        return "dynamodb"
    if target.startswith("AmazonSQS") or "Action=" in environ.get("QUERY_STRING", ""):
        return "sqs"
    return "s3"


def peek_body(environ) -> bytes:
    """The request's body (CONTENT_LENGTH bytes of wsgi.input), put back as a fresh
    stream so the app behind can still read it."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    return raw


def _written_keys(operation: str, body: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
    """(table, key) of every item a write request touches."""
    if operation == "PutItem":
        return [(body["TableName"], {k: body["Item"][k] for k in ("pk", "sk") if k in body["Item"]})]
    if operation in ("UpdateItem", "DeleteItem"):
        return [(body["TableName"], body["Key"])]
    out = []
    if operation == "TransactWriteItems":
        for entry in body.get("TransactItems", []):
            for kind, op in entry.items():
                if kind == "Put":
                    out.append((op["TableName"], {k: op["Item"][k] for k in ("pk", "sk") if k in op["Item"]}))
                elif kind in ("Update", "Delete"):
                    out.append((op["TableName"], op["Key"]))
    elif operation == "BatchWriteItem":
        for table, requests in body.get("RequestItems", {}).items():
            for r in requests:
                if "PutRequest" in r:
                    item = r["PutRequest"]["Item"]
                    out.append((table, {k: item[k] for k in ("pk", "sk") if k in item}))
                elif "DeleteRequest" in r:
                    out.append((table, r["DeleteRequest"]["Key"]))
    return out


def _key_id(table: str, key: Dict[str, Any]) -> Tuple[str, str]:
    return table, json.dumps(key, sort_keys=True)


class Faults:
    """The switches, and the table history a lagging GSI is answered from."""

    def __init__(self, region: str):
        self.region = region
        self.down_until = 0.0
        self.down_services: Tuple[str, ...] = ()
        self.refused = 0
        self.gsi_lag = 0.0
        self.lagged_queries = 0
        self._history: Dict[Tuple[str, str], List[Tuple[float, Optional[Dict[str, Any]]]]] = {}
        self._lock = threading.Lock()

    # ---- switches (for tests)
    @contextmanager
    def outage(self, services: Iterable[str] = ("s3", "dynamodb"), seconds: Optional[float] = None):
        """Refuse every request to `services` inside the block (or for `seconds` from now)."""
        self.down_services = tuple(services)
        self.down_until = time.monotonic() + (seconds if seconds is not None else 1e9)
        try:
            yield self
        finally:
            if seconds is None:
                self.down_until = 0.0

    def start_outage(self, seconds: float, services: Iterable[str] = ("s3", "dynamodb")) -> None:
        self.down_services = tuple(services)
        self.down_until = time.monotonic() + seconds

    @contextmanager
    def lagging_gsi(self, seconds: float):
        """GSI queries see the table as it was `seconds` ago."""
        self.gsi_lag = seconds
        try:
            yield self
        finally:
            self.gsi_lag = 0.0
            with self._lock:
                self._history.clear()

    def is_down(self, service: str) -> bool:
        return service in self.down_services and time.monotonic() < self.down_until

    # ---- the lagging index
    def _backend(self):
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[DEFAULT_ACCOUNT_ID][self.region]

    def _current(self, table: str, key: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        try:
            item = self._backend().get_item(table, key)
        except Exception:
            return None
        return item.to_json()["Attributes"] if item is not None else None

    def before_write(self, operation: str, body: Dict[str, Any]) -> List[Tuple[str, Dict[str, Any]]]:
        keys = _written_keys(operation, body)
        with self._lock:
            for table, key in keys:
                ident = _key_id(table, key)
                if ident not in self._history:   # the state before the first write seen: long visible
                    self._history[ident] = [(0.0, self._current(table, key))]
        return keys

    def after_write(self, keys: List[Tuple[str, Dict[str, Any]]]) -> None:
        now = time.monotonic()
        with self._lock:
            for table, key in keys:
                self._history[_key_id(table, key)].append((now, self._current(table, key)))

    def lag_query(self, request: Dict[str, Any], response: Dict[str, Any]) -> Dict[str, Any]:
        """The query's answer with each item as it was gsi_lag seconds ago: absent if it did
        not exist then, its old attributes if it changed since, left out if its old version
        sat elsewhere in the index."""
        table, index = request["TableName"], request["IndexName"]
        key_attrs = _index_key_attrs(self._backend(), table, index)
        horizon = time.monotonic() - self.gsi_lag
        items = []
        with self._lock:
            for item in response.get("Items", []):
                history = self._history.get(_key_id(table, {k: item[k] for k in ("pk", "sk") if k in item}))
                if not history:
                    items.append(item)
                    continue
                old = next((state for t, state in reversed(history) if t <= horizon), None)
                if old is None or any(old.get(a) != item.get(a) for a in key_attrs):
                    continue
                items.append(old)
        self.lagged_queries += 1
        return {**response, "Items": items, "Count": len(items)}


def _index_key_attrs(backend, table: str, index: str) -> List[str]:
    for gsi in backend.get_table(table).global_indexes:
        if gsi.name == index:
            return [k["AttributeName"] for k in gsi.schema]
    return []


class FaultyApp:
    """WSGI middleware in front of moto: refuses what is down, remembers writes while a
    GSI lag is on, and answers index queries from that memory."""

    def __init__(self, app: Callable, faults: Faults):
        self.app = app
        self.faults = faults

    def __call__(self, environ, start_response):
        faults = self.faults
        service = service_of(environ)
        if faults.is_down(service):
            faults.refused += 1
            body = _OUTAGE_DDB if service == "dynamodb" else _OUTAGE_S3
            kind = "application/x-amz-json-1.0" if service == "dynamodb" else "application/xml"
            status = "500 Internal Server Error" if service == "dynamodb" else "503 Service Unavailable"
            start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
            return [body]
        if service != "dynamodb" or not faults.gsi_lag:
            return self.app(environ, start_response)
        operation = environ.get("HTTP_X_AMZ_TARGET", "").split(".", 1)[-1]
        request = json.loads(peek_body(environ) or b"{}")
        if operation in _DDB_WRITES:
            keys = faults.before_write(operation, request)
            out = list(self.app(environ, start_response))
            faults.after_write(keys)
            return out
        if operation == "Query" and request.get("IndexName"):
            captured: Dict[str, Any] = {}

            def capture(status, headers, exc_info=None):
                captured.update(status=status, headers=headers)

            body = b"".join(self.app(environ, capture))
            if captured["status"].startswith("200"):
                body = json.dumps(faults.lag_query(request, json.loads(body))).encode()
            # the CRC of moto's answer no longer fits; botocore checks it only when present
            headers = [(k, v) for k, v in captured["headers"] if k.lower() not in ("content-length", "x-amz-crc32")]
            start_response(captured["status"], headers + [("Content-Length", str(len(body)))])
            return [body]
        return self.app(environ, start_response)
