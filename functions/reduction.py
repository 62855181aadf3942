"""Calibrations and 2-D reduction as the frames arrive: the reduction function.

It works through task messages (`{"goodman_live_task": ...}`) on its own queue: the
ingest function sends `after_index` for every frame it lists; a new master sends
`master` (flats that waited for a bias) and `reduce` (frames that waited for it); the
API sends `rereduce` for a version of a file's reduction an observer asked for with
other settings (golive_data/versions.py). Work that no observer waits for goes to the
background queue, which workers take only when this one is empty: `clean`, the whole
2-D frame's cosmic-ray cleaning that a science frame's spectra do not wait for
(`reduce_file`), and `archive`.
Everything here is idempotent: a master version is named by the frames in it and
built by the one worker whose conditional claim succeeds; a frame is reduced again
only when a better calibration than the one it used exists.
"""
from __future__ import annotations

import io
import json
import logging
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from astropy.io import fits

from golive_data import versions
from golive_data.index import MASTER_READY, file_id_for, iter_all_files, utcnow
from golive_data.item import (
    CLEANING_FAILED, CLEANING_QUEUED, FILE_ITEM, FINAL_STATUSES, REDUCTION, SPECTROSCOPY, STATUS_FAILED,
    STATUS_INDEXED, STATUS_REDUCED, STATUS_REDUCING, STATUS_RETRYING, STATUS_UNSUPPORTED,
)
from functions import fluxing, spectroscopy
from functions.core import calibrations as cal
from functions.core.calibrations import compare_setup, rank_calibrations, setup_of
from functions.core.ccd import Frame, put_name
from functions.core.masters import _prepare, make_master_bias, make_master_flat
from functions.core.preview import png_preview, render_preview
from functions.leases import Renewing
from functions.core.reduce import Calibrations, ReductionSettings, UnsupportedFrame, reduce_frame
from functions.products import (product_keys as _product_keys, put_file_product, put_product, read_fits,
                                read_raw_fits, remove_unlisted, stamp_version, stem_of)
from functions import deadletters
from functions.archives import build_archive
from functions.services import Services, gave_up, parse_task, send_task, sqs_batch
from functions.versions import GOODMAN_LIVE_VERSION, goodman_pipeline_version

log = logging.getLogger("goodman_live.reduction")


@dataclass(frozen=True)
class ReductionConfig:
    settings: ReductionSettings
    window_days: int = 7
    #: the file whose own settings are merged in (spectroscopy.config_for_item), if any
    file_id: Optional[str] = None

    @classmethod
    def from_settings(cls, settings) -> "ReductionConfig":
        return cls(ReductionSettings.from_dict(json.loads(settings.reduction_overrides)),
                   window_days=settings.calibration_window_days)


_configs: Dict[Any, ReductionConfig] = {}


def config_for(services: Services) -> ReductionConfig:
    """The reduction settings of this deployment, parsed once per warm worker."""
    if services.settings not in _configs:
        _configs[services.settings] = ReductionConfig.from_settings(services.settings)
    return _configs[services.settings]


# How long a master build may go without renewing its lease (renewed every third of it)
# before another worker may take it over.
LEASE_SECONDS = 30
# A night's first master of a group is built at once; when more frames of the group
# arrive later, the rebuild waits this long so that a burst (31 biases uploaded
# together) gives one new version, not one per frame.
REBUILD_DELAY_SECONDS = 10


# Masters never change once written: a warm worker keeps the ones it has read.
_master_cache: Dict[str, Frame] = {}
_MASTER_CACHE_SIZE = 8


def _binning(item) -> tuple:
    serial, parallel = item["binning"].split("x")
    return int(serial), int(parallel)


def _fits_bytes(frame: Frame) -> bytes:
    buf = io.BytesIO()
    fits.PrimaryHDU(data=frame.data, header=frame.header).writeto(buf, output_verify="silentfix")
    return buf.getvalue()


def _stamp(header: fits.Header) -> None:
    header["GSP_VERS"] = (goodman_pipeline_version(), "goodman-pipeline version")
    header["GLV_VERS"] = (GOODMAN_LIVE_VERSION, "Goodman Live version")


def _seconds_until(iso: Optional[str]) -> int:
    if not iso:
        return 0
    left = datetime.fromisoformat(iso) - datetime.now(timezone.utc)
    return max(0, int(left.total_seconds()))


# ---- entry points -------------------------------------------------------------------
def after_index(item: Dict[str, Any], services, config: ReductionConfig) -> None:
    if item.get("status") in (STATUS_FAILED, STATUS_UNSUPPORTED):
        return
    obstype = item.get("obstype")
    if obstype in (cal.BIAS, cal.FLAT):
        if item.get("status") == STATUS_RETRYING:  # an earlier attempt failed; this one may not
            services.index.update_file(item["file_id"], {"status": STATUS_INDEXED, "error": None})
        build_master_if_ready(obstype, item["night"], cal.group_of(obstype, item), services, config, include=item)
    elif obstype in cal.REDUCED_TYPES:
        reduce_file(item, services, config)


def handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    """Lambda entry for the reduction queue (task messages sent by the functions)."""
    return sqs_batch(event, handle_message)


def dlq_handler(event: Dict[str, Any], context: Any = None) -> Dict[str, Any]:
    """Lambda entry for the reduction queue's dead letters: the file ends `failed`."""
    return sqs_batch(event, dead_lettered)


#: Where a task's failure shows: by default on its file (`retrying` while the queue tries
#: again, `failed` when it gives up); a deferred cleaning's only on the file's cleaning
#: (its spectra are final: the file stays as it was); a re-reduction's on its version
#: (the file shows the version before).
_FAILURE_SHOWN_ON = {"clean": "cleaning", "rereduce": "version"}
#: How the error of a failed cleaning starts.
_CLEANING_ERROR = "cleaning of the 2-D frame: "


def _failure_shown_on(task: Dict[str, Any]) -> str:
    """"file", "cleaning" or "version" (see _FAILURE_SHOWN_ON)."""
    return _FAILURE_SHOWN_ON.get(task.get("task"), "file")


def handle_message(body: Any, services: Services, attempt: int = 1) -> None:
    task = parse_task(body)
    if task is None:
        log.error("dropping a message that is not a task: %.200s", body)
        return
    try:
        handle_task(task, services, config_for(services))
    except Exception as exc:
        shown_on = _failure_shown_on(task)
        if task.get("file_id") and shown_on != "version":
            error = f"attempt {attempt} failed: {type(exc).__name__}: {exc}"
            try:
                services.index.update_file(task["file_id"], {"error": _CLEANING_ERROR + error}
                                           if shown_on == "cleaning" else {"status": STATUS_RETRYING,
                                                                           "error": error})
            except Exception:
                log.exception("could not record the failure on %s", task["file_id"])
        raise


def dead_lettered(body: Any, services: Services, attempt: int = 1) -> None:
    """A task the queue gave up on: kept for the operator to redrive (functions.operations),
    and its file, unless it has finished since, ends `failed` with the last error (for a
    `rereduce`, its version does; the file shows the version before it)."""
    task = parse_task(body) or {}
    deliveries = services.settings.max_receive_count
    log.error("task gave up after %d deliveries: %s", deliveries, task)
    existing = services.index.get_file(task["file_id"]) if task.get("file_id") else None
    version = _task_version(task, services)
    reason = gave_up(deliveries, version.get("error") if version else existing.get("error") if existing else
                     f"not recorded (a {task.get('task') or 'malformed'} task names no file: see the reduction "
                     f"function's log)")
    files = ([deadletters.file_ref(existing)] if existing else
             [{"file_id": task["file_id"]}] if task.get("file_id") else [])
    entry = deadletters.record(services, deadletters.REDUCE, body, reason, files, deliveries)
    if version:
        versions.update_version(*versions.store_of(services.index), task["file_id"], version["version"],
                                {"status": versions.FAILED, "error": reason, "finished_at": utcnow()})
    elif _failure_shown_on(task) == "cleaning" and existing and existing.get("cleaning") == CLEANING_QUEUED:
        # its spectra are final: only the 2-D frame stays uncleaned (the quicklook)
        services.index.update_file(task["file_id"], {
            "status": STATUS_REDUCED, "cleaning": CLEANING_FAILED, "error": _CLEANING_ERROR + reason,
            "dead_letter": deadletters.note(entry)})
    elif existing and existing.get("status") not in FINAL_STATUSES:
        services.index.update_file(task["file_id"], {"status": STATUS_FAILED, "error": reason,
                                                     "dead_letter": deadletters.note(entry)})


#: A worker's claim on a file it reduces; renewed while it works, so a killed worker
#: holds the file up for at most this long.
CLAIM_SECONDS = 30
#: How soon a task that found its file claimed looks again.
CLAIM_RETRY_SECONDS = 3
_CLAIMED_TASKS = ("after_index", "reduce", "calibrate", "flux", "rereduce", "clean")


def handle_task(task: Dict[str, Any], services, config: ReductionConfig) -> None:
    if task.get("task") in _CLAIMED_TASKS and task.get("file_id"):
        # One worker at a time reduces or calibrates a file: two at once (a duplicate
        # event, a lamp and a master arriving together) would each list its own
        # products and delete the other's.
        file_id, token = task["file_id"], uuid.uuid4().hex
        busy_until = services.index.claim_file(file_id, token, CLAIM_SECONDS)
        if busy_until is not None:
            # another worker has the file: look again soon (the work is idempotent, so
            # this costs nothing if that worker did it all)
            send_task(services, task, delay=min(_seconds_until(busy_until) + 1, CLAIM_RETRY_SECONDS),
                      background=bool(task.get("background")))  # back on the queue it came from
            return
        try:
            with Renewing(lambda: services.index.claim_file(file_id, token, CLAIM_SECONDS), CLAIM_SECONDS / 3,
                          f"file {file_id}"):
                _run_task(task, services, config)
        finally:
            services.index.release_file(file_id, token)
        return
    _run_task(task, services, config)


def _run_task(task: Dict[str, Any], services, config: ReductionConfig) -> None:
    if task.get("task") == "after_index":
        item = services.index.get_file(task["file_id"])
        if item:
            after_index(item, services, config)
    elif task.get("task") == "reduce":
        item = services.index.get_file(task["file_id"])
        if item:
            reduce_file(item, services, config, force=bool(task.get("force")))
    elif task.get("task") == "calibrate":
        item = services.index.get_file(task["file_id"])
        if item and spectroscopy.spectra_ready(item):
            spectroscopy.calibrate(item, services, config, looks=int(task.get("looks") or 0))
    elif task.get("task") == "flux":
        item = services.index.get_file(task["file_id"])
        if item and spectroscopy.spectra_ready(item):
            fluxing.flux_calibrate(item, services, spectroscopy.config_for_item(config, item, services))
    elif task.get("task") == "standard_reduced":
        standard = services.index.get_file(task["file_id"])
        if standard and (standard.get("sensitivity") or {}).get("key"):
            fluxing.standard_reduced(standard, services, config, settle=False)
    elif task.get("task") == "clean":
        clean_file(task["file_id"], int(task.get("version") or 0), services, config)
    elif task.get("task") == "rereduce":
        rereduce(task["file_id"], int(task["version"]), services, config)
    elif task.get("task") == "master":
        build_master_if_ready(task["kind"], task["night"], task["group"], services, config, now=True)
    elif task.get("task") == "dependents":
        trigger_dependents(task["kind"], task["night"], task["group"], services, settle=False)
    elif task.get("task") == "archive":
        build_archive(task["archive_id"], services)
    elif task.get("task") == "lamp_reduced":
        lamp = services.index.get_file(task["file_id"])
        if lamp and lamp.get("status") == STATUS_REDUCED:
            spectroscopy.lamp_reduced(lamp, services, config, settle=False)
    else:
        log.error("unknown task %r", task)


# ---- masters ------------------------------------------------------------------------
def _members(kind: str, night: str, group: str, services, include: Optional[Dict[str, Any]] = None
             ) -> List[Dict[str, Any]]:
    # Only reducible frames are `indexed` (ingest marks the others `unsupported`).
    members = [f for f in iter_all_files(services.index, night, kind)
               if f.get("status") == STATUS_INDEXED and cal.group_of(kind, f) == group]
    # The night's listing is a GSI, which on AWS may not show the frame that was indexed
    # a moment ago; the frame that asked (read consistently) is a member all the same.
    if (include and include.get("status") == STATUS_INDEXED and cal.group_of(kind, include) == group
            and include.get("night") == night and all(f["file_id"] != include["file_id"] for f in members)):
        members.append(include)
    # A master is combined from one raw shape: should two of Goodman's spectroscopic ROIs
    # share a group name (full frame and ZZ Ceti at one readout), the shape with the most
    # frames is used (ties: the most rows); frames of the other shape are reduced without
    # that master and say why (reduce_frame compares shapes).
    shapes: Dict[Any, int] = {}
    for f in members:
        shape = (f.get("naxis2"), f.get("naxis1"))
        shapes[shape] = shapes.get(shape, 0) + 1
    if len(shapes) > 1:
        keep = max(shapes, key=lambda s: (shapes[s], s[0] or 0, s[1] or 0))
        log.warning("%s %s on %s mixes raw shapes %s: using the %s frames", kind, group, night, shapes, keep)
        members = [f for f in members if (f.get("naxis2"), f.get("naxis1")) == keep]
    return members


def find_master(kind: str, group: str, night: str, services, config: ReductionConfig) -> Optional[Dict[str, Any]]:
    candidates = services.index.masters(kind, group, cal.window_start(night, config.window_days), night)
    return cal.choose_master(candidates, night)


def find_flat(item: Dict[str, Any], services, config: ReductionConfig):
    """(master flat, notes): the frame's own configuration's master when there is one in
    the window; else, when `flat_other_slits`, one of a configuration that differs only
    in the slit width (the same pixels, the same long slit: `calibrations.CRITERIA`),
    the nearest in time, with a note saying so."""
    exact = find_master(cal.FLAT, cal.flat_group(item), item["night"], services, config)
    if exact is not None or not config.settings.flat_other_slits:
        return exact, []
    tol = float(config.settings.calibration_angle_tolerance)
    for night in [item["night"]] + cal.nights_from(item["night"], config.window_days):
        others = [{**e["setup"], "night": e["night"], "file_name": e["file_name"], "configuration": e["configuration"]}
                  for e in iter_all_files(services.index, night, "MASTER_FLAT")
                  if e.get("setup") and e.get("configuration") != cal.flat_group(item)]
        for candidate, notes in rank_calibrations("FLAT", item, others, tol):
            master = find_master(cal.FLAT, candidate["configuration"], item["night"], services, config)
            if master is not None:
                return master, [f"flat {master['file_name']}: {n}" for n in notes]
    return None, []


def load_master(master: Dict[str, Any], services) -> Frame:
    key = master["key"]
    if key not in _master_cache:
        if len(_master_cache) >= _MASTER_CACHE_SIZE:
            _master_cache.pop(next(iter(_master_cache)))
        data, header = read_fits(services.s3, master["bucket"], key)
        _master_cache[key] = Frame(data=data.astype("float32"), header=header, mask=None)
    return _master_cache[key]


def build_master_if_ready(kind: str, night: str, group: str, services, config: ReductionConfig, now: bool = False,
                          include: Optional[Dict[str, Any]] = None):
    settings = config.settings
    members = _members(kind, night, group, services, include)
    needed = settings.min_bias_files if kind == cal.BIAS else settings.min_flat_files
    if len(members) < needed:
        log.info("%s %s on %s: %d of %d frames, waiting", kind, group, night, len(members), needed)
        if include is not None:
            # The night's listing (a GSI) may not yet show the frames indexed in the same
            # instants as this one: the last of a burst could count short, and nobody
            # would look again. Each new frame looks once more when it has caught up.
            send_task(services, {"task": "master", "kind": kind, "night": night, "group": group},
                      delay=services.settings.gsi_settle_seconds)
        return None
    bias = None
    if kind == cal.FLAT and not settings.ignore_bias:
        bias = find_master(cal.BIAS, cal.bias_group(members[0]), night, services, config)
        if bias is None:
            log.info("flat %s on %s waits for a master bias", group, night)
            return None  # the master bias, when made, sends a task for this group
    ids = [m["file_id"] for m in members]
    digest, count = cal.members_hash(ids), len(members)
    existing = services.index.get_master(kind, group, night, count, digest)
    if existing and existing.get("status") == MASTER_READY:
        return existing
    if not now and services.index.masters(kind, group, night, night):
        send_task(services, {"task": "master", "kind": kind, "night": night, "group": group},
                  delay=REBUILD_DELAY_SECONDS)
        return None
    if not services.index.claim_master(kind, group, night, count, digest, lease_seconds=LEASE_SECONDS):
        # Another worker is building this very version. Its success triggers the
        # dependents; should it die, a check every few seconds takes over once its
        # lease ends.
        holder = services.index.get_master(kind, group, night, count, digest) or {}
        if holder.get("status") != MASTER_READY:
            send_task(services, {"task": "master", "kind": kind, "night": night, "group": group},
                      delay=min(_seconds_until(holder.get("lease_until")) + 1, REBUILD_DELAY_SECONDS))
        return holder
    try:
        with Renewing(lambda: services.index.renew_master(kind, group, night, count, digest, LEASE_SECONDS),
                      LEASE_SECONDS / 3, f"master {kind} {group} {night}"):
            master = _build_master(kind, group, night, members, bias, services, config)
    except Exception:
        services.index.release_master(kind, group, night, count, digest)
        raise
    services.index.finish_master(kind, group, night, count, digest, master)
    _record_master_entry(kind, night, master, members, services)
    trigger_dependents(kind, night, group, services)
    return master


def _build_master(kind, group, night, members, bias, services, config) -> Dict[str, Any]:
    started = time.process_time()
    members = sorted(members, key=lambda m: m["file_name"])
    frames = [read_raw_fits(services.s3, m["raw_bucket"], m["raw_key"]) for m in members]
    names = [m["file_name"] for m in members]
    name = cal.master_file_name(kind, group, night, len(members))
    fields: Dict[str, Any] = {"file_name": name, "members": names, "setup": setup_of(members[0])}
    if kind == cal.BIAS:
        frame = make_master_bias(frames, names=names)
    else:
        bias_frame = load_master(bias, services) if bias else None
        trimmed = _prepare(*frames[0])[0].data.shape
        if bias_frame is not None and bias_frame.data.shape != trimmed:
            # a bias group shared by two readouts of one binning and gain (full frame and
            # a window): the master is of the other shape, so this flat is built without it
            log.warning("master bias %s is %s, the flats %s after trimming: flat %s built without it",
                        bias["file_name"], bias_frame.data.shape, trimmed, name)
            fields["bias_skipped"] = (f"master bias {bias['file_name']} is {bias_frame.data.shape}, the flats "
                                      f"{trimmed} after trimming (another readout)")
            bias, bias_frame = None, None
        frame, slit = make_master_flat(frames, bias_frame, method=config.settings.flat_normalization,
                                       order=config.settings.flat_normalization_order, names=names)
        if bias:
            put_name(frame.header, "GSP_BIAS", bias["file_name"], "Master bias image")
        fields.update(slit_section=slit, master_bias=bias["file_name"] if bias else None)
    _stamp(frame.header)
    key = f"{night}/masters/{name}"
    fits_product = put_product(services, key, name, "master", _fits_bytes(frame), "application/fits")
    png_name = stem_of(name) + ".png"
    preview = put_product(services, f"{night}/masters/{png_name}", png_name, "preview", png_preview(frame.data),
                          "image/png")
    fields.update(bucket=fits_product["bucket"], key=key, products=[fits_product, preview],
                  cpu_seconds=round(time.process_time() - started, 3))
    return {k: v for k, v in fields.items() if v is not None}


def _record_master_entry(kind, night, master, members, services) -> None:
    """A master is listed beside the night's raw files, as its own entry."""
    file_id = file_id_for(master["bucket"], master["key"])
    services.index.record_file({
        "file_id": file_id, "night": night, "file_name": master["file_name"], "obstype": f"MASTER_{kind}",
        "status": STATUS_REDUCED, "configuration": members[0].get("configuration"), "camera": members[0].get("camera"),
        "object": f"{len(members)} {kind.lower()} frames", "members": master["members"],
        "slit_section": master.get("slit_section"), "master_bias": master.get("master_bias"),
        "setup": master.get("setup"),
        "products": master["products"], "raw_bucket": master["bucket"], "raw_key": master["key"],
    })


def trigger_dependents(kind: str, night: str, group: str, services, settle: bool = True) -> None:
    """Send the work a new master makes possible: flats that waited for a bias, and
    frames reduced without this kind of calibration or with one from another night.
    Idempotent (reduce_file does nothing when the calibrations are the same), so it is
    run once now and, with `settle`, once more when the listings have caught up. The
    frames go to the background queue: they have their spectra already, and a night's
    worth of them must not hold up the frame that arrives next."""
    if settle:
        send_task(services, {"task": "dependents", "kind": kind, "night": night, "group": group},
                  delay=services.settings.gsi_settle_seconds)
    if kind == cal.BIAS:
        flat_groups = {cal.flat_group(f) for f in iter_all_files(services.index, night, cal.FLAT)
                       if f.get("status") == STATUS_INDEXED and cal.bias_group(f) == group}
        for flat in sorted(flat_groups):
            send_task(services, {"task": "master", "kind": cal.FLAT, "night": night, "group": flat})
    used = "master_bias" if kind == cal.BIAS else "master_flat"
    setup = None
    for obstype in cal.REDUCED_TYPES:
        for f in iter_all_files(services.index, night, obstype):
            if f.get("status") in (STATUS_UNSUPPORTED, STATUS_FAILED):
                continue
            current = (f.get("calibrations") or {}).get(used)
            if cal.group_of(kind, f) == group:
                if current is None or current.get("night") != night or group not in current["file_name"]:
                    send_task(services, {"task": "reduce", "file_id": f["file_id"], "background": True},
                              background=True)
            elif kind == cal.FLAT and current is None:
                # a flat through another slit may serve it (find_flat decides)
                setup = setup or _group_setup(night, group, services)
                if setup and compare_setup("FLAT", f, setup)[0]:
                    send_task(services, {"task": "reduce", "file_id": f["file_id"], "background": True},
                              background=True)


def _group_setup(night: str, group: str, services) -> Optional[Dict[str, Any]]:
    for f in iter_all_files(services.index, night, cal.FLAT):
        if cal.flat_group(f) == group:
            return setup_of(f)
    return None


# ---- frames ---------------------------------------------------------------------------
#: Previews made before cosmic-ray cleaning; the clean products replace them.
QUICKLOOK_KINDS = ("quicklook", spectroscopy.QUICKLOOK_SPECTRUM)
def _calibration_ref(master: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    if not master:
        return None
    return {"file_name": master["file_name"], "night": master["night"], "count": master["count"], "key": master["key"]}


def same_calibrations(a: Optional[Dict[str, Any]], b: Optional[Dict[str, Any]]) -> bool:
    """Two `calibrations` references name the same masters (the index keeps no None
    inside a map, so a missing master reads back as an absent key)."""
    return ({k: v for k, v in (a or {}).items() if v is not None}
            == {k: v for k, v in (b or {}).items() if v is not None})


def best_calibrations(item: Dict[str, Any], services, config: ReductionConfig):
    """(master bias, master flat, notes, the `calibrations` reference they make), by the
    item's own settings."""
    config = spectroscopy.config_for_item(config, item, services)
    settings, night = config.settings, item["night"]
    bias = None if settings.ignore_bias else find_master(cal.BIAS, cal.bias_group(item), night, services, config)
    flat, master_notes = (None, []) if settings.ignore_flats else find_flat(item, services, config)
    return bias, flat, master_notes, {"master_bias": _calibration_ref(bias), "master_flat": _calibration_ref(flat)}


def _calibrations_for(bias, flat, services) -> Calibrations:
    return Calibrations(
        master_bias=load_master(bias, services) if bias else None,
        master_bias_name=bias["file_name"] if bias else None,
        master_flat=load_master(flat, services) if flat else None,
        master_flat_name=flat["file_name"] if flat else None,
        slit_section=flat.get("slit_section") if flat else None,
    )


def _stamped(item: Dict[str, Any], **times: str) -> Dict[str, Any]:
    """The item's timeline with these steps' times (the ingest's steps kept)."""
    return {**(item.get("timeline") or {}), **times}


def _defers_cleaning(item: Dict[str, Any], settings, defer_clean: bool) -> bool:
    return defer_clean and item.get("obstype") == "OBJECT" and settings.cosmic_ray_rejection != "none"


def reduce_file(item: Dict[str, Any], services, config: ReductionConfig, force: bool = False,
                defer_clean: bool = True) -> None:
    """Reduce a frame with the best calibrations there are; nothing to do if it
    already was reduced with exactly those (a duplicate event, a redundant task),
    unless `force` (a product found missing). What an earlier reduction wrote and this
    one does not (a target no longer found, the quicklook previews) is deleted once
    the index lists the new products, unless a version lists it. The item's own
    settings (`settings`, those of the version it shows) are on top of the deployment's,
    and its products go to that version's folder (products.item_product_key).

    A science frame walks one pipeline: reduced without its cosmic-ray cleaning, its
    spectra extracted with cosmic rays rejected in their own rows, calibrated, listed:
    the observer has the final spectrum about a second after the frame arrived. With
    `defer_clean` the whole frame's cleaning (2 s of CPU, for the 2-D `cfzst_` product)
    is then queued behind new frames (`clean_file`, on the background queue) and the
    item stays `reducing` with `cleaning: queued`; without it (a requested version,
    which is adopted only once complete) it is done here."""
    config = spectroscopy.config_for_item(config, item, services)
    settings = config.settings
    bias, flat, master_notes, wanted = best_calibrations(item, services, config)
    if not force and spectroscopy.spectra_ready(item) and same_calibrations(item.get("calibrations"), wanted):
        if item.get("cleaning") == CLEANING_QUEUED:  # (its task may be lost: a duplicate is skipped)
            send_task(services, _clean_task(item), background=True)
        return
    started = utcnow()
    version = int(item.get("reduction_version") or 0) + 1
    earlier = _product_keys(item.get("products"))
    services.index.update_file(item["file_id"], {"status": STATUS_REDUCING})
    data, header = read_raw_fits(services.s3, item["raw_bucket"], item["raw_key"])
    calibs = _calibrations_for(bias, flat, services)
    defer = _defers_cleaning(item, settings, defer_clean)
    products = [p for p in item.get("products", []) if p["kind"] == "header"]
    try:
        frame, report = reduce_frame(data, header, item["obstype"], item["camera"], _binning(item), calibs, settings,
                                     defer_cosmic=defer)
    except UnsupportedFrame as exc:
        services.index.update_file(item["file_id"], {"status": STATUS_UNSUPPORTED, "error": str(exc),
                                                     "cleaning": None})
        remove_unlisted(item["file_id"], earlier, services)
        return
    _stamp(frame.header)
    reduced_name = report["prefix"] + item["file_name"]
    products.append(_raw_preview(item, data, services))
    if defer:
        products.append(_quicklook_preview(item, frame, report, services))
    else:
        products.append(put_file_product(services, item, reduced_name, "reduced", _fits_bytes(frame),
                                         "application/fits"))
        products.append(_reduced_preview(item, frame, report, services))
    timeline = _stamped(item, started_at=started, reduced_at=utcnow())
    waiting = [k for k, v in wanted.items() if v is None]
    fields = {
        "status": STATUS_REDUCING if defer else STATUS_REDUCED, "error": None, "products": products,
        "calibrations": wanted, "reduced_file_name": reduced_name, "reduction": _jsonable(report),
        "waiting_for": waiting, "master_notes": master_notes, "reduction_version": version,
        "cleaning": CLEANING_QUEUED if defer else None, "timeline": timeline,
    }
    extracted = None
    if report["obstype"] == "OBJECT":
        spectra_fields, spectra_products, extracted = spectroscopy.extract(item, frame, report["prefix"], services,
                                                                           settings, clean_windows=defer, report=report)
        fields.update(spectra_fields, products=products + spectra_products, reduction=_jsonable(report))
        timeline["extracted_at"] = utcnow()
    elif report["obstype"] == "COMP":
        lamp_fields, lamp_products = spectroscopy.solve_lamp(item, frame, report["prefix"], services, settings)
        fields.update(lamp_fields, products=products + lamp_products)
    fields["products"] = stamp_version(fields["products"], version)
    services.index.update_file(item["file_id"], fields)
    log.info("reduced %s -> %s (bias %s, flat %s%s)", item["file_name"], reduced_name,
             calibs.master_bias_name, calibs.master_flat_name, "; cleaning of the 2-D frame queued" if defer else "")
    try:
        if report["obstype"] == "OBJECT":
            spectroscopy.calibrate({**item, **fields}, services, config, extracted)
        elif report["obstype"] == "COMP":
            spectroscopy.lamp_reduced({**item, **fields}, services, config)
        if defer:
            send_task(services, _clean_task({**item, **fields}), background=True)
    finally:
        # the new products are listed: the earlier ones go even if what follows fails
        # (a retry would no longer know them, and they would stay behind as orphans)
        remove_unlisted(item["file_id"], earlier, services)


def _clean_task(item: Dict[str, Any]) -> Dict[str, Any]:
    return {"task": "clean", "file_id": item["file_id"], "version": int(item.get("reduction_version") or 0),
            "background": True}


def clean_file(file_id: str, version: int, services, config: ReductionConfig) -> None:
    """The deferred half of a science frame's reduction: the whole frame cleaned of
    cosmic rays, the 2-D `cfzst_` product and its preview in place of the quicklook,
    and the item `reduced`. Skipped when a newer reduction has overtaken this one (it
    queued a cleaning of its own); a better master found meanwhile reduces the frame
    again instead (which queues its own)."""
    item = services.index.get_file(file_id)
    if (not item or item.get("cleaning") not in (CLEANING_QUEUED, CLEANING_FAILED)  # (failed: a redrive)
            or item.get("status") in (STATUS_FAILED, STATUS_UNSUPPORTED)
            or int(item.get("reduction_version") or 0) != int(version)):
        log.info("cleaning of %s version %s: overtaken, nothing to do", file_id, version)
        return
    config = spectroscopy.config_for_item(config, item, services)
    bias, flat, _, wanted = best_calibrations(item, services, config)
    if not same_calibrations(item.get("calibrations"), wanted):
        reduce_file(item, services, config)
        return
    data, header = read_raw_fits(services.s3, item["raw_bucket"], item["raw_key"])
    frame, report = reduce_frame(data, header, item["obstype"], item["camera"], _binning(item),
                                 _calibrations_for(bias, flat, services), config.settings)
    _stamp(frame.header)
    stale = [p for p in item.get("products", []) if p["kind"] in QUICKLOOK_KINDS]
    products = [p for p in item.get("products", []) if p["kind"] not in QUICKLOOK_KINDS]
    products += stamp_version([
        put_file_product(services, item, report["prefix"] + item["file_name"], "reduced", _fits_bytes(frame),
                         "application/fits"),
        _reduced_preview(item, frame, report, services)], version)
    services.index.update_file(file_id, {
        "status": STATUS_REDUCED, "error": None, "products": products, "cleaning": None,
        "reduction": _jsonable({**report, "cosmic_windows": (item.get("reduction") or {}).get("cosmic_windows")}),
        "timeline": _stamped(item, cleaned_at=utcnow())})
    remove_unlisted(file_id, _product_keys(stale), services)
    log.info("cleaned %s of cosmic rays: %s pixels", item["file_name"], report.get("cosmic_pixels"))


# ---- versions: a re-reduction with settings (golive_data/versions.py) ---------------
#: What a file item shows of a reduction: put back as it was when a version fails.
_SHOWN_FIELDS = ("status", "error", "products") + tuple(f.name for f in FILE_ITEM
                                                        if f.writer in (REDUCTION, SPECTROSCOPY))


def rereduce(file_id: str, n: int, services, config: ReductionConfig) -> None:
    """Reduce a file again as version `n`, with the settings it asked for on top of the
    deployment's, and make it the version the file item shows. The version shown
    until now is recorded first if it has no version item (version 0, the automatic
    reduction), so that it stays listed and its objects stay in storage. A version
    that fails (settings refused, an unsupported frame, an error) is not adopted: the
    item goes back to what it showed, and the version says why; an error is raised
    again, so the queue retries the version."""
    store = versions.store_of(services.index)
    version = versions.get_version(*store, file_id, n)
    if version is None:
        log.error("rereduce: file %s has no version %d", file_id, n)
        return
    if version.get("status") == versions.DONE:
        return  # a duplicate task
    item = services.index.get_file(file_id)
    overrides = version.get("settings") or {}
    refusal = _refusal(item, overrides, config)
    if refusal:
        versions.update_version(*store, file_id, n, {"status": versions.FAILED, "error": refusal,
                                                     "finished_at": utcnow()})
        return
    versions.update_version(*store, file_id, n, {"status": versions.REDUCING, "started_at": utcnow(), "error": None,
                                                 "finished_at": None})
    _record_shown_version(item, services)
    services.index.update_file(file_id, {"settings_version": n, "settings": overrides})
    try:
        reduce_file({**item, "settings_version": n, "settings": overrides}, services, config, force=True,
                    defer_clean=False)
    except Exception as exc:
        _not_adopted(item, n, f"{type(exc).__name__}: {exc}", services)
        raise
    after = services.index.get_file(file_id) or {}
    if after.get("status") != STATUS_REDUCED:
        _not_adopted(item, n, after.get("error") or f"the reduction ended {after.get('status')}", services)
        return
    versions.update_version(*store, file_id, n, {
        "status": versions.DONE, "finished_at": utcnow(), "error": None, "products": after.get("products") or [],
        "spectra_status": after.get("spectra_status")})
    log.info("reduced %s as version %d with %s", item["file_name"], n, overrides)


def _refusal(item: Optional[Dict[str, Any]], overrides: Dict[str, Any], config: ReductionConfig) -> Optional[str]:
    """Why a version of this file cannot be reduced at all, or None."""
    if item is None:
        return "the file is no longer in the index"
    if item.get("obstype") not in cal.REDUCED_TYPES:
        return (f"a {item.get('obstype')} frame is not reduced on its own: only lamp and science frames "
                f"({', '.join(cal.REDUCED_TYPES)}) have versions")
    try:
        config.settings.merged(overrides)
    except ValueError as exc:
        return f"settings refused: {exc}"
    return None


def _record_shown_version(item: Dict[str, Any], services) -> None:
    """The version the item shows, as a version item, unless it has one (version 0,
    the automatic reduction, gets one when a requested version first replaces it)."""
    shown = int(item.get("settings_version") or 0)
    reduced = item.get("status") == STATUS_REDUCED
    versions.record_version(*versions.store_of(services.index), item["file_id"], shown, {
        "status": versions.DONE if reduced else versions.FAILED, "settings": item.get("settings") or {},
        "requested_by": versions.AUTOMATIC if shown == 0 else "unknown", "requested_at": item.get("created_at"),
        "finished_at": item.get("updated_at"), "products": item.get("products") or [],
        "spectra_status": item.get("spectra_status"),
        "error": None if reduced else item.get("error") or f"the reduction ended {item.get('status')}"})


def _not_adopted(before: Dict[str, Any], n: int, error: str, services) -> None:
    """Version `n` failed: the item shows again what it showed `before`, the version
    says why, and the objects it listed are deleted (what a version lists is kept)."""
    file_id = before["file_id"]
    now = services.index.get_file(file_id) or {}
    written = _product_keys(now.get("products")) - _product_keys(before.get("products"))
    services.index.update_file(file_id, {name: before.get(name) for name in _SHOWN_FIELDS})
    versions.update_version(*versions.store_of(services.index), file_id, n, {
        "status": versions.FAILED, "error": error, "finished_at": utcnow(), "products": []})
    remove_unlisted(file_id, written, services)
    log.warning("version %d of %s failed, not adopted: %s", n, before.get("file_name"), error)


def _task_version(task: Dict[str, Any], services) -> Optional[Dict[str, Any]]:
    """The version a `rereduce` task is for (None for other tasks)."""
    if task.get("task") != "rereduce" or not task.get("file_id") or task.get("version") is None:
        return None
    return versions.get_version(*versions.store_of(services.index), task["file_id"], int(task["version"]))


def _reduced_preview(item, frame, report, services) -> Dict[str, Any]:
    """The reduced frame's PNG, with what a viewer needs to examine it (the page's
    imexam): its layout and where the saturated pixels are (moved out of the report,
    which every listing carries)."""
    png, layout = render_preview(frame.data)
    entry = put_file_product(services, item, report["prefix"] + stem_of(item["file_name"]) + ".png",
                             "preview_reduced", png, "image/png")
    return {**entry, **layout, "saturation_level": report.get("saturation_level"),
            "saturated_count": report.get("saturated_count", 0),
            "saturated": report.pop("saturated_pixels", None) or []}


def _raw_preview(item, data, services) -> Dict[str, Any]:
    name = stem_of(item["file_name"]) + "_raw.png"
    return put_file_product(services, item, name, "preview_raw", png_preview(data), "image/png")


def _quicklook_preview(item, frame, report, services) -> Dict[str, Any]:
    """The reduced frame's PNG before its cosmic-ray cleaning, shown until the clean
    one replaces it (`clean_file`, whose preview lists the saturated pixels)."""
    report.pop("saturated_pixels", None)
    return put_file_product(services, item, report["prefix"] + stem_of(item["file_name"]) + "_quicklook.png",
                            "quicklook", png_preview(frame.data), "image/png")


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
