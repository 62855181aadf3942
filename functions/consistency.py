"""The consistency check: storage and index compared, night by night, and the work
that fell between two writers found and queued again.

The functions decide from listings (the index's GSIs) that AWS keeps eventually
consistent, and a crash can fall between writing an object and listing it. Each
decision that matters is made idempotent and looked at again a few seconds later
(`gsi_settle_seconds`); this check is the net under all of that. It reports

  stranded      work two writers each left to the other: a frame waiting for a
                master or a lamp that exists, a calibration group with more frames
                than its newest master;
  stuck         a file in a non-final status for longer than `stuck_after`;
  missing_raw   an index item whose raw object is gone;
  missing_product  a product the item lists that is not in storage;
  duplicate_product  a product listed twice on one item;
  raw_without_item  a raw object the ingest never indexed;
  orphan_object an object in the products bucket no item lists (older than
                `orphan_grace`, so a reduction writing right now is left alone);
  abandoned_upload  a multipart upload to the night's raw folder begun more than
                `abandoned_after` ago and never completed (its parts are billed
                until aborted; in AWS the raw bucket's lifecycle rule aborts them
                after a day, this check sooner and also where there is no lifecycle);

and with `repair` fixes what it can: queues the work again, marks what cannot be
had `failed` with the reason, deletes orphans, aborts abandoned uploads. The same code runs as
`python -m infra.local check`, `python -m functions.operations check` and, every few
minutes, as the scheduled function in AWS (`scheduled_handler`).
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Sequence, Union

from golive_data.index import FileIndex, file_id_for, iter_all_files
from golive_data.item import FINAL_STATUSES, STATUS_FAILED, STATUS_INDEXED, STATUS_REDUCED
from golive_data.versions import list_versions, store_of
from functions.core import calibrations as cal
from functions.products import item_product_key, stem_of
from functions.services import Services, send_task

log = logging.getLogger("goodman_live.consistency")

#: A file requeued this many times by the check and still not final ends `failed`.
MAX_REQUEUES = 3
#: A raw object younger than this may simply not have been ingested yet.
RAW_GRACE_SECONDS = 120.0
#: A multipart upload open this long is abandoned: a Goodman frame uploads in minutes.
ABANDONED_UPLOAD_SECONDS = 6 * 3600.0


@dataclass
class Finding:
    kind: str
    night: str
    what: str
    file_id: Optional[str] = None
    key: Optional[str] = None
    action: Optional[str] = None
    repaired: bool = False


@dataclass
class Report:
    nights: List[str] = field(default_factory=list)
    files: int = 0
    objects: int = 0
    findings: List[Finding] = field(default_factory=list)
    seconds: float = 0.0
    repair: bool = False

    def add(self, finding: Finding) -> Finding:
        self.findings.append(finding)
        return finding

    def counts(self) -> Dict[str, int]:
        out: Dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def as_dict(self) -> Dict[str, Any]:
        repaired = sum(f.repaired for f in self.findings)
        return {"nights": self.nights, "files": self.files, "objects": self.objects, "repair": self.repair,
                "counts": self.counts(), "problems": len(self.findings) - repaired, "repaired": repaired,
                "seconds": round(self.seconds, 3), "findings": [asdict(f) for f in self.findings]}

    def lines(self) -> List[str]:
        d = self.as_dict()
        out = [f"checked {d['files']} index items and {d['objects']} objects on {len(self.nights)} night(s) "
               f"({', '.join(self.nights) or 'none'}) in {d['seconds']:.1f} s"]
        for f in self.findings:
            done = " [repaired]" if f.repaired else ""
            action = f" -> {f.action}" if f.action else ""
            out.append(f"  {f.kind:18s} {f.night}  {f.what}{action}{done}")
        out.append(f"{len(self.findings)} finding(s): " + (", ".join(f"{v} {k}" for k, v in sorted(self.counts().items()))
                                                           or "all consistent")
                   + (f"; {d['repaired']} repaired" if self.repair else ""))
        return out


class _ListingCache:
    """The index with each night's listing read once per check (find_lamp and
    find_flat look at the same nights for every waiting frame)."""

    def __init__(self, index: FileIndex):
        self._index = index
        self._pages: Dict[Any, Any] = {}

    def list_files(self, night, obstype=None, limit=100, token=None):
        key = (night, obstype, limit, token)
        if key not in self._pages:
            self._pages[key] = self._index.list_files(night, obstype, limit=limit, token=token)
        return self._pages[key]

    def __getattr__(self, name):
        return getattr(self._index, name)


def recent_nights(index: FileIndex, count: Optional[int] = None, active_within: Optional[float] = None
                  ) -> List[str]:
    """The nights to look at: the `count` latest by name, or those with a file indexed
    within `active_within` seconds (the scheduled sweep), or all."""
    nights = index.list_nights(limit=1000)
    if active_within is not None:
        floor = (datetime.now(timezone.utc) - timedelta(seconds=active_within)).strftime("%Y-%m-%dT%H:%M:%S")
        nights = [n for n in nights if (n.get("updated_at") or "") >= floor]
    names = [n["night"] for n in nights]
    return names[:count] if count is not None else names


def _age_seconds(iso: Optional[str], now: datetime) -> float:
    if not iso:
        return float("inf")
    when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return (now - when).total_seconds()


def _list_objects(s3, bucket: str, prefix: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = obj["LastModified"]
    return out


def check(services: Services, config, nights: Union[None, int, Sequence[str]] = 3, repair: bool = False,
          stuck_after: float = 900.0, orphan_grace: float = 3600.0, active_within: Optional[float] = None,
          raw_grace: float = RAW_GRACE_SECONDS, abandoned_after: float = ABANDONED_UPLOAD_SECONDS,
          busy_within: float = 0.0) -> Report:
    """Compare storage and index on `nights` (a count of the latest nights, a list of
    names, or None for all); with `repair`, fix what can be fixed. `busy_within`: a file
    (or a calibration group's newest frame) changed this recently is being worked on;
    its missing products and better calibrations are left to the work under way."""
    started = time.monotonic()
    if nights is None or isinstance(nights, int):
        names = recent_nights(services.index, nights, active_within)
    else:
        names = list(nights)
    report = Report(nights=names, repair=repair)
    cached = Services(services.settings, services.s3, services.sqs, _ListingCache(services.index))
    for night in names:
        _check_night(night, cached, config, report, repair, stuck_after, orphan_grace, raw_grace, busy_within)
        _check_uploads(night, cached, report, repair, abandoned_after)
    report.seconds = time.monotonic() - started
    return report


def _check_night(night, services, config, report, repair, stuck_after, orphan_grace, raw_grace,
                 busy_within=0.0) -> None:
    settings, now = services.settings, datetime.now(timezone.utc)
    items = list(iter_all_files(services.index, night))
    report.files += len(items)
    products = _list_objects(services.s3, settings.products_bucket, f"{night}/")
    raw = _list_objects(services.s3, settings.raw_bucket, f"{settings.raw_prefix}{night}/")
    report.objects += len(products) + len(raw)
    listed = set()
    for item in items:
        keys = [p["key"] for p in item.get("products") or [] if p.get("bucket") == settings.products_bucket]
        listed.update(keys)
        if item.get("raw_bucket") == settings.products_bucket:     # a master's own entry
            listed.add(item.get("raw_key"))
        if item.get("versions_requested") or item.get("settings_version"):
            # a re-reduced file's earlier versions are kept: their objects are listed
            # by their version items (golive_data/versions.py), not by the file's
            for version in list_versions(*store_of(services.index), item["file_id"]):
                listed.update(p["key"] for p in version.get("products") or []
                              if p.get("bucket") == settings.products_bucket)
        busy = _age_seconds(item.get("updated_at"), now) < busy_within
        _check_item(item, keys, products, raw, services, config, report, repair, stuck_after, now, busy)
    indexed = {item["file_id"] for item in items}
    reingested = set()
    for key, modified in sorted(raw.items()):
        if file_id_for(settings.raw_bucket, key) in indexed or _age_seconds(modified.isoformat(), now) < raw_grace:
            continue
        f = report.add(Finding("raw_without_item", night, f"{key} was never indexed", key=key,
                               action="ingest it again"))
        reingested.add(f"{night}/{stem_of(key[len(settings.raw_prefix) + len(night) + 1:])}/")
        if repair:
            f.repaired = _reingest(services, key, modified)
    for key, modified in sorted(products.items()):
        if key in listed or _age_seconds(modified.isoformat(), now) < orphan_grace:
            continue
        if any(key.startswith(folder) for folder in reingested):
            continue    # its file is being indexed again and will list it
        f = report.add(Finding("orphan_object", night, f"s3://{settings.products_bucket}/{key} is listed by no item",
                               key=key, action="delete it"))
        if repair:
            services.s3.delete_object(Bucket=settings.products_bucket, Key=key)
            f.repaired = True
    _check_masters(night, items, services, config, report, repair,
                   busy=lambda f: _age_seconds(f.get("updated_at"), now) < busy_within)


def _check_uploads(night, services, report, repair, abandoned_after) -> None:
    """Multipart uploads to the night's raw folder that nobody will complete."""
    settings, now = services.settings, datetime.now(timezone.utc)
    pages = services.s3.get_paginator("list_multipart_uploads").paginate(
        Bucket=settings.raw_bucket, Prefix=f"{settings.raw_prefix}{night}/")
    for upload in (u for page in pages for u in page.get("Uploads", [])):
        age = (now - upload["Initiated"]).total_seconds()
        if age < abandoned_after:
            continue
        key = upload["Key"]
        f = report.add(Finding("abandoned_upload", night, f"s3://{settings.raw_bucket}/{key}: a multipart upload "
                                                          f"begun {age / 3600:.1f} h ago, never completed",
                               key=key, action="abort it"))
        if repair:
            services.s3.abort_multipart_upload(Bucket=settings.raw_bucket, Key=key, UploadId=upload["UploadId"])
            f.repaired = True


def _check_item(item, keys, products, raw, services, config, report, repair, stuck_after, now,
                busy=False) -> None:
    settings, night, fid = services.settings, item["night"], item["file_id"]
    name = item.get("file_name")
    if len(keys) != len(set(keys)):
        f = report.add(Finding("duplicate_product", night, f"{name} lists a product twice", fid,
                               action="list each once"))
        if repair:
            seen, unique = set(), []
            for p in item.get("products") or []:
                if p.get("key") not in seen:
                    seen.add(p.get("key"))
                    unique.append(p)
            services.index.update_file(fid, {"products": unique})
            f.repaired = True
    is_raw = item.get("raw_bucket") == settings.raw_bucket
    raw_key = item.get("raw_key") or ""
    if is_raw and raw_key.startswith(f"{settings.raw_prefix}{night}/") and raw_key not in raw:
        if item.get("status") != STATUS_FAILED:
            f = report.add(Finding("missing_raw", night, f"{name}: s3://{settings.raw_bucket}/{raw_key} is gone", fid,
                                   key=raw_key, action="mark failed"))
            if repair:
                services.index.update_file(fid, {"status": STATUS_FAILED,
                                                 "error": "the raw object is no longer in storage"})
                f.repaired = True
        return
    # A file being worked on lists products as they are written and replaced: only a
    # final item's list is a promise.
    # So is one read from a listing (a GSI) that lags the reduction replacing them.
    missing = [k for k in keys if k not in products] if item.get("status") in FINAL_STATUSES and not busy else []
    if missing:
        f = report.add(Finding("missing_product", night, f"{name}: {len(missing)} listed product(s) not in storage "
                                                          f"({missing[0]}{', ...' if len(missing) > 1 else ''})",
                               fid, key=missing[0]))
        if repair:
            f.action, f.repaired = _restore_products(item, missing, services)
    status = item.get("status")
    if status not in FINAL_STATUSES and _age_seconds(item.get("updated_at"), now) > stuck_after:
        f = report.add(Finding("stuck", night, f"{name} has been {status} for "
                                               f"{_age_seconds(item.get('updated_at'), now):.0f} s", fid))
        if repair:
            f.action, f.repaired = _requeue_stuck(item, services)
        return
    if status == STATUS_REDUCED and item.get("obstype") in cal.REDUCED_TYPES and not busy:
        why = _stranded(item, services, config)
        if why:
            what, task = why
            f = report.add(Finding("stranded", night, f"{name}: {what}", fid, action=f"queue {task['task']}"))
            if repair:
                send_task(services, task)
                f.repaired = True


def _stranded(item, services, config):
    """(what, task) when a reduced frame has a better calibration than the one it used."""
    from functions import reduction, spectroscopy

    waiting = item.get("waiting_for") or []
    used = item.get("calibrations") or {}
    if (any(w in waiting for w in ("master_bias", "master_flat"))
            or any(ref and ref.get("night") != item["night"] for ref in used.values())):
        wanted = reduction.best_calibrations(item, services, config)[3]
        if not reduction.same_calibrations(wanted, used):
            return "a better master exists than the one it was reduced with", {"task": "reduce",
                                                                                "file_id": item["file_id"]}
    if item.get("obstype") == "OBJECT" and item.get("spectra") and (
            spectroscopy.LAMP_WAIT in waiting or (item.get("lamp") or {}).get("night") != item["night"]):
        choice = spectroscopy.find_lamp(item, services, config)
        if choice.lamp is not None and spectroscopy._lamp_ref(choice) != item.get("lamp"):
            return (f"lamp {choice.lamp['file_name']} fits and was not used",
                    {"task": "calibrate", "file_id": item["file_id"]})
    return None


def _check_masters(night, items, services, config, report, repair, busy=lambda f: False) -> None:
    """A calibration group with more reducible frames than its newest master holds
    (unless one of them is `busy`: its own task asks for the master)."""
    from functions import reduction

    settings = config.settings
    for kind, needed in ((cal.BIAS, settings.min_bias_files), (cal.FLAT, settings.min_flat_files)):
        # only frames the reduction can group (an item without its camera, readout, gain
        # ... has no group, and is the item checks' business, not a master's)
        frames = [f for f in items if f.get("obstype") == kind and f.get("status") == STATUS_INDEXED
                  and not cal.reason_not_reducible(f)]
        groups = {cal.group_of(kind, f) for f in frames}
        for group in sorted(groups - {cal.group_of(kind, f) for f in frames if busy(f)}):
            members = reduction._members(kind, night, group, services)
            if len(members) < needed:
                continue
            if kind == cal.FLAT and not settings.ignore_bias and reduction.find_master(
                    cal.BIAS, cal.bias_group(members[0]), night, services, config) is None:
                continue    # it waits for a bias; the bias's master will ask for it
            newest = services.index.masters(kind, group, night, night)
            digest = cal.members_hash([m["file_id"] for m in members])
            if newest and max(m.get("count", 0) for m in newest) >= len(members):
                continue
            if services.index.get_master(kind, group, night, len(members), digest):
                continue    # being built
            have = max((m.get("count", 0) for m in newest), default=0)
            f = report.add(Finding("stranded", night, f"{kind.lower()} {group}: {len(members)} frames, newest master "
                                                      f"has {have}", action="queue master"))
            if repair:
                send_task(services, {"task": "master", "kind": kind, "night": night, "group": group})
                f.repaired = True


def _restore_products(item, missing, services):
    if item.get("obstype") in cal.REDUCED_TYPES and item.get("status") == STATUS_REDUCED:
        send_task(services, {"task": "reduce", "file_id": item["file_id"], "force": True})
        return "reduce it again", True
    header = item_product_key(item, stem_of(item["file_name"]) + ".header.txt")
    if missing == [header] and item.get("raw_bucket") == services.settings.raw_bucket:
        from functions import ingest

        data, total, _ = ingest.read_head(services.s3, item["raw_bucket"], item["raw_key"])
        header_obj = ingest.parse_primary_header(data, total)[0]
        ingest.write_header_product(services, item, header_obj)
        return "write the header product again", True
    if str(item.get("obstype", "")).startswith("MASTER_"):
        return "none possible (the master's frames build it again when one more arrives)", False
    return "none possible", False


def _requeue_stuck(item, services):
    count = int(item.get("check_requeues") or 0)
    if count >= MAX_REQUEUES:
        services.index.update_file(item["file_id"], {
            "status": STATUS_FAILED, "error": f"stuck in {item.get('status')}: requeued {count} times by the "
                                              f"consistency check without finishing (last error: "
                                              f"{item.get('error') or 'none recorded'})"})
        return "mark failed", True
    services.index.update_file(item["file_id"], {"check_requeues": count + 1})
    if item.get("obstype"):
        send_task(services, {"task": "after_index", "file_id": item["file_id"]})
        return "queue after_index", True
    return "ingest it again", _reingest(services, item["raw_key"], None)


def s3_event(bucket: str, key: str) -> Dict[str, Any]:
    """An ObjectCreated notification as S3 sends it (the ingest reads bucket and key)."""
    from urllib.parse import quote_plus

    return {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "eventVersion": "2.1",
                         "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/")}}}]}


def _reingest(services, key: str, modified) -> bool:
    url = getattr(services.settings, "ingest_queue_url", None)
    if url:
        services.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event(services.settings.raw_bucket, key)))
    else:
        from functions import ingest

        ingest.handle_message(s3_event(services.settings.raw_bucket, key), services)
    return True


# ---- the scheduled function -----------------------------------------------------------
#: The scheduled sweep looks at nights with a file indexed in the last day.
SWEEP_ACTIVE_WITHIN = 86400.0
#: The scheduled sweep leaves a file alone this long after its last change: a sweep
#: that lands between a reduction writing its products and listing them (or reads the
#: item from a lagging listing) would otherwise reduce it again for nothing.
SWEEP_BUSY_WITHIN = 120.0


def sweep(services: Services, config, active_within: float = SWEEP_ACTIVE_WITHIN,
          busy_within: float = SWEEP_BUSY_WITHIN) -> Report:
    report = check(services, config, nights=None, repair=True, active_within=active_within, busy_within=busy_within)
    if report.findings:
        for line in report.lines():
            log.warning("%s", line)
    return report


def scheduled_handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    """Lambda entry for the EventBridge schedule."""
    from functions.reduction import config_for
    from functions.services import warm_services

    services = warm_services()
    d = sweep(services, config_for(services)).as_dict()
    return {k: d[k] for k in ("nights", "counts", "problems", "repaired", "seconds")}

