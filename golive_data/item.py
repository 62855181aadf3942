"""The file item of the index, declared once: each field's name, JSON type, meaning,
who writes it, and whether the API serves it.

The writers are checked against it (FileIndex.record_file and update_file refuse an
undeclared field, so a field renamed in the core fails its tests instead of silently
vanishing from the page), the API serves only its public fields (index.public_view),
and `json_schema()` describes the item for clients (GET /api/openapi.json).

A field is written whole: nested values (products, spectra, calibrations, ...) are
described here by their type and meaning; their own shape is their writer's.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple


# Statuses a raw file can be in. A file in a FINAL status needs no further work until
# something new happens to it (a new upload, a calibration it waited for, a
# re-reduction request).
STATUS_RETRYING = "retrying"
STATUS_REDUCING = "reducing"        # indexed; its reduction is pending or running
STATUS_INDEXED = "indexed"          # indexed; nothing more to do for it alone (bias, flat)
STATUS_REDUCED = "reduced"
STATUS_UNSUPPORTED = "unsupported"  # a valid frame the reduction cannot handle; `error` says why
STATUS_FAILED = "failed"
STATUSES = (STATUS_RETRYING, STATUS_REDUCING, STATUS_INDEXED, STATUS_REDUCED, STATUS_UNSUPPORTED, STATUS_FAILED)
#: `cleaning`: the spectra are done, the 2-D frame's cosmic-ray cleaning is queued;
#: or it failed for good (the frame is `reduced` with its quicklook, `error` says why).
CLEANING_QUEUED = "queued"
CLEANING_FAILED = "failed"
#: The frame types that are reduced (the others are combined into masters, or only
#: indexed), and so can be re-reduced with settings.
REDUCED_TYPES = ("COMP", "OBJECT")
FINAL_STATUSES = frozenset({STATUS_INDEXED, STATUS_REDUCED, STATUS_UNSUPPORTED, STATUS_FAILED})

#: What a file item's `obstype` (and its by_night_type partition) can be: the frame
#: types of functions/core/classify.py (OBSTYPES) and the masters the reduction lists
#: beside them, in the order the page offers them.
FILE_TYPES = ("BIAS", "FLAT", "COMP", "OBJECT", "MASTER_BIAS", "MASTER_FLAT", "DARK", "FOCUS", "UNKNOWN")
# Who writes a field (the `writer` column).
INDEX = "index"                 # golive_data/index.py, FileIndex itself
INGEST = "ingest"               # functions/ingest.py
CLASSIFY = "classify"           # functions/core/classify.py, through the ingest
REDUCTION = "reduction"         # functions/reduction.py
SPECTROSCOPY = "spectroscopy"   # functions/spectroscopy.py, in the reduction function
OPERATIONS = "operations"       # the dead-letter handlers, functions/operations.py, functions/consistency.py
API = "api"                     # functions/api/ (a re-reduction request: golive_data/versions.py)

#: how a frame's proposal was found (golive_data/access.py Resolution.source)
PROPOSAL_SOURCES = ("calibration", "header", "alias", "schedule", "unknown")
SPECTRA_STATUSES = ("calibrated", "partly_calibrated", "not_calibrated", "waiting_for_lamp", "no_targets")
#: a science frame's flux calibration (functions/fluxing.py)
FLUX_CALIBRATED, FLUX_NO_STANDARD, FLUX_NOT_CALIBRATED, FLUX_FAILED = ("calibrated", "no_standard", "not_calibrated",
                                                                      "failed")


class UndeclaredField(ValueError):
    """A writer gave the index a field this declaration does not name."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str                   # JSON type: string, integer, number, boolean, array, object
    meaning: str
    writer: str
    public: bool = True         # served by the API
    items: Optional[str] = None  # an array's element type
    enum: Optional[Tuple[str, ...]] = None


def _f(name, type_, writer, meaning, **kw) -> Field:
    return Field(name=name, type=type_, meaning=meaning, writer=writer, **kw)


#: Every field a file item (pk=FILE#<file_id>, sk=FILE) may hold, in the order a reader
#: meets them. Any field but the required ones may be absent; a writer removes a field
#: by setting it to None.
FILE_ITEM: Tuple[Field, ...] = (
    # identity and location
    _f("file_id", "string", INGEST, "hash of the raw object's bucket and key: the same location, the same item"),
    _f("night", "string", INGEST, "observing night, YYYY-MM-DD (from the key, else from DATE-OBS; 'unsorted')"),
    _f("file_name", "string", INGEST, "the raw file's name (a master's own name for a master entry)"),
    _f("path", "string", INGEST, "path below the night's folder ('RAW/0267.fits'); the listing's order"),
    _f("raw_bucket", "string", INGEST, "bucket of the raw object (of the master's FITS for a master entry)"),
    _f("raw_key", "string", INGEST, "key of the raw object (of the master's FITS for a master entry)"),
    _f("etag", "string", INGEST, "ETag of the raw object indexed: a new upload of the same key is indexed again"),
    _f("size", "integer", INGEST, "size of the raw object in bytes"),
    # state
    _f("status", "string", INGEST, "where the file is: retrying, reducing, indexed, reduced, unsupported, failed "
                                   "(also written by the reduction and the operations)", enum=STATUSES),
    _f("error", "string", INGEST, "why the file failed, is unsupported or is being retried; null otherwise "
                                  "(also written by the reduction and the operations)"),
    _f("products", "array", INGEST, "files made from it: {kind, file_name, bucket, key, content_type, ...}; "
                                    "the API adds a signed `url` to each (written by every step)", items="object"),
    _f("created_at", "string", INDEX, "UTC time the item was first written"),
    _f("updated_at", "string", INDEX, "UTC time of its last change (the change feed's order)"),
    # classification (functions/core/classify.py) and header repairs
    _f("obstype", "string", CLASSIFY, "frame type (MASTER_BIAS / MASTER_FLAT for a master entry)", enum=FILE_TYPES),
    _f("technique", "string", CLASSIFY, "Spectroscopy or Imaging"),
    _f("camera", "string", CLASSIFY, "Red or Blue camera"),
    _f("object", "string", CLASSIFY, "OBJECT keyword (for a master entry: how many frames it combines)"),
    _f("exptime", "number", CLASSIFY, "exposure time in seconds"),
    _f("date_obs", "string", CLASSIFY, "DATE-OBS: exposure start, UTC"),
    _f("ra", "string", CLASSIFY, "RA as written (telescope pointing, hh:mm:ss.sss)"),
    _f("dec", "string", CLASSIFY, "DEC as written (dd:mm:ss.sss)"),
    _f("airmass", "number", CLASSIFY, "AIRMASS at the exposure start (absent when the header has none or a "
                                      "placeholder below 1)"),
    _f("grating", "string", CLASSIFY, "grating (lines/mm), normalised"),
    _f("mode", "string", CLASSIFY, "grating preset or the written-out angles (G<grating angle>-C<camera angle>)"),
    _f("wavmode", "string", CLASSIFY, "WAVMODE keyword"),
    _f("filter", "string", CLASSIFY, "FILTER (first filter wheel)"),
    _f("filter2", "string", CLASSIFY, "FILTER2 (order-blocking filter)"),
    _f("slit", "string", CLASSIFY, "slit, normalised"),
    _f("binning", "string", CLASSIFY, "binning as '<x>x<y>'"),
    _f("roi", "string", CLASSIFY, "region of interest (readout)"),
    _f("lamps", "array", CLASSIFY, "comparison lamps on", items="string"),
    _f("cam_angle", "number", CLASSIFY, "camera angle, degrees"),
    _f("grt_angle", "number", CLASSIFY, "grating angle, degrees"),
    _f("gain", "number", CLASSIFY, "GAIN, e-/ADU"),
    _f("rdnoise", "number", CLASSIFY, "RDNOISE, e-"),
    _f("naxis1", "integer", CLASSIFY, "NAXIS1, columns"),
    _f("naxis2", "integer", CLASSIFY, "NAXIS2, rows"),
    _f("configuration", "string", CLASSIFY, "the setup as one key: what calibrations are grouped by"),
    _f("notes", "array", CLASSIFY, "what the classification noticed (and header repairs, 'header repaired: ...')",
       items="string"),
    _f("header_repairs", "array", INGEST, "what was repaired in the raw header to read it", items="string"),
    _f("proposal_header", "string", CLASSIFY, "PROPOSAL keyword as written; which proposal the frame belongs to is "
                                              "resolved from it when read (golive_data/access.py)"),
    # reduction (functions/reduction.py)
    _f("calibrations", "object", REDUCTION, "the masters it was reduced with: {master_bias, master_flat}, each "
                                            "{file_name, night, count, key}"),
    _f("reduced_file_name", "string", REDUCTION, "name of the reduced 2-D product (cfzst_...)"),
    _f("reduction", "object", REDUCTION, "the reduction's report: prefix, steps, sections, ..."),
    _f("waiting_for", "array", REDUCTION, "calibrations it was reduced without, and is reduced again when they "
                                          "arrive (master_bias, master_flat, lamp)", items="string"),
    _f("master_notes", "array", REDUCTION, "how the masters used differ from the frame", items="string"),
    _f("reduction_version", "integer", REDUCTION, "how many times it has been reduced; stamped on its products"),
    _f("cleaning", "string", REDUCTION, "'queued' while a science frame's spectra are done and its whole 2-D frame "
                                        "waits for its cleaning of cosmic rays (a background task); 'failed' when "
                                        "that cleaning gave up (the frame is reduced with its spectra and quicklook, "
                                        "`error` says why, a redrive tries again); absent otherwise",
       enum=(CLEANING_QUEUED, CLEANING_FAILED)),
    _f("timeline", "object", INGEST, "UTC times the frame passed each step: uploaded_at (the storage event's "
                                     "time), event_at, indexed_at (the ingest), started_at, reduced_at, "
                                     "extracted_at, calibrated_at (its latest reduction), cleaned_at (its 2-D frame "
                                     "cleaned of cosmic rays): where the seconds between the shutter and the page go "
                                     "(also written by the reduction)"),
    _f("members", "array", REDUCTION, "a master entry's frames (file names)", items="string"),
    _f("slit_section", "string", REDUCTION, "a master flat's slit-illuminated rows, FITS section"),
    _f("master_bias", "string", REDUCTION, "the master bias a master flat was made with (file name)"),
    _f("setup", "object", REDUCTION, "a master entry's setup: the classification fields calibrations are "
                                     "matched on"),
    _f("settings_version", "integer", REDUCTION, "the requested version (golive_data/versions.py) its products "
                                                 "belong to, filed under {night}/{stem}/v<n>/; 0 or absent: the "
                                                 "automatic reduction"),
    _f("settings", "object", REDUCTION, "the settings it is reduced with on top of the deployment's: the overrides "
                                        "of version settings_version, kept by later reductions ({} or absent: none)"),
    _f("versions_requested", "integer", API, "how many re-reductions with settings were requested (numbers the "
                                             "versions)"),
    # spectra (functions/spectroscopy.py)
    _f("spectra", "array", SPECTROSCOPY, "one entry per extracted target: number, row, fwhm, extraction, "
                                         "median_snr, wavelength, wavelength_error, calibrated_file_name, "
                                         "flux_file_name (its flux-calibrated product), ...",
       items="object"),
    _f("spectra_shape", "array", SPECTROSCOPY, "shape of the 2-D frame the spectra were extracted from",
       items="integer"),
    _f("spectra_notes", "array", SPECTROSCOPY, "what the target finding and extraction noticed", items="string"),
    _f("spectra_status", "string", SPECTROSCOPY, "whether a science frame's spectra are wavelength calibrated",
       enum=SPECTRA_STATUSES),
    _f("spectra_reason", "string", SPECTROSCOPY, "why they are not (all) calibrated"),
    _f("spectra_fix", "string", SPECTROSCOPY, "what the observer can do about it"),
    _f("calibration_notes", "array", SPECTROSCOPY, "what differed between the frame and the calibrations used",
       items="string"),
    _f("lamp", "object", SPECTROSCOPY, "the comparison lamp a science frame was calibrated with (file_id, "
                                       "file_name, night, date_obs, setup, ...)"),
    _f("wavelength", "object", SPECTROSCOPY, "a lamp's wavelength solution summary (lines, rms, ...)"),
    _f("wavelength_error", "string", SPECTROSCOPY, "why a lamp has no wavelength solution"),
    # flux calibration (functions/fluxing.py)
    _f("sensitivity", "object", SPECTROSCOPY, "a spectrophotometric standard's sensitivity function: standard, how "
                                              "it was recognised (name, position), airmass, exptime, points, rms "
                                              "(fractional), range (A), masked bands, its `sens_` product (file_name, "
                                              "key), or `error` saying why none was built"),
    _f("flux_calibration", "object", SPECTROSCOPY, "a science frame's flux calibration: status (calibrated, "
                                                   "no_standard, not_calibrated, failed), the standard used "
                                                   "(standard, file_id, file_name, night, airmass), notes (what "
                                                   "differed, another night), errors, or reason and fix"),
    # operations
    _f("dead_letter", "object", OPERATIONS, "the dead letter holding its last message: {id, queue, reason, at, "
                                            "deliveries}; removed when redriven"),
    _f("check_requeues", "integer", OPERATIONS, "how many times the consistency check requeued it while stuck"),
    # the table's own attributes (keys of the table and its indexes, the reduction's claim)
    _f("pk", "string", INDEX, "partition key, FILE#<file_id>", public=False),
    _f("sk", "string", INDEX, "sort key, FILE", public=False),
    _f("night_pk", "string", INDEX, "by_night / by_update partition, NIGHT#<night>", public=False),
    _f("night_sk", "string", INDEX, "by_night / by_night_type sort key: the path below the night", public=False),
    _f("type_pk", "string", INDEX, "by_night_type partition, NIGHT#<night>#<obstype>", public=False),
    _f("updated_sk", "string", INDEX, "by_update sort key, <updated_at>#<file_id>", public=False),
    _f("claim_token", "string", INDEX, "the reduction worker holding the file", public=False),
    _f("claim_until", "string", INDEX, "when that worker's claim runs out", public=False),
)

#: Fields the API adds to an item as it serves it to a caller, never stored (so no
#: writer may set them): who the frame belongs to as resolved for that request
#: (golive_data/access.py), and on GET /api/files/{id} the versions kept.
SERVED: Tuple[Field, ...] = (
    _f("proposal", "string", API, "the proposal the frame belongs to, resolved from proposal_header, the operator's "
                                  "aliases and schedule; null for calibrations and frames of unknown proposal"),
    _f("proposal_source", "string", API, "how it was resolved", enum=PROPOSAL_SOURCES),
    _f("access_note", "string", API, "why only staff see the frame (its proposal is unknown), and what would fix it"),
    _f("versions", "array", API, "every reduction version kept, oldest first (GET /api/files/{id} only): "
                                 "{version, status, settings, requested_by, requested_at, finished_at, error, "
                                 "products}", items="object"),
    _f("urls_expire_at", "string", API, "when the signed URLs of its products stop working (UTC; GET "
                                        "/api/files/{id} only): ask again before then"),
)

FIELDS: Dict[str, Field] = {f.name: f for f in FILE_ITEM}
PUBLIC_FIELDS = frozenset(f.name for f in FILE_ITEM + SERVED if f.public)
#: always in what the API serves (public_view gives `error` and `products` a null / empty default)
REQUIRED = ("file_id", "night", "file_name", "status", "error", "products")


def check_fields(names: Iterable[str]) -> None:
    """UndeclaredField if any of these is not a field of the file item."""
    unknown = sorted(set(names) - FIELDS.keys())
    if unknown:
        raise UndeclaredField("not fields of the index's file item (golive_data/item.py): " + ", ".join(unknown))


def public(item: Mapping[str, Any]) -> Dict[str, Any]:
    """The item's public fields."""
    return {k: v for k, v in item.items() if k in PUBLIC_FIELDS}


def json_schema() -> Dict[str, Any]:
    """JSON Schema (draft 2020-12, as OpenAPI 3.1 takes it) of a file item as the API
    serves it. Optional fields may be null; products carry the `url` the API signs."""
    properties: Dict[str, Any] = {}
    for f in FILE_ITEM + SERVED:
        if not f.public:
            continue
        prop: Dict[str, Any] = {"type": f.type if f.name in ("file_id", "night", "file_name", "status", "products")
                                else [f.type, "null"], "description": f"{f.meaning} [{f.writer}]"}
        if f.items:
            prop["items"] = {"type": f.items}
        if f.enum:
            prop["enum"] = list(f.enum) + ([] if isinstance(prop["type"], str) else [None])
        properties[f.name] = prop
    properties["products"]["items"] = {
        "type": "object", "required": ["kind", "file_name", "url"],
        "properties": {"kind": {"type": "string"}, "file_name": {"type": "string"},
                       "url": {"type": "string", "description": "signed download URL, short-lived"}}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "File",
            "description": "A raw file of the index and what was made from it (golive_data/item.py).",
            "type": "object", "required": list(REQUIRED), "properties": properties,
            "additionalProperties": False}


def markdown_table() -> str:
    """The declaration as a Markdown table (README.md's, checked by a test)."""
    rows = ["| field | type | written by | served | meaning |", "|---|---|---|---|---|"]
    for f in FILE_ITEM + SERVED:
        kind = f"{f.type} of {f.items}" if f.items else f.type
        writer = f"{f.writer} (as served, not stored)" if f in SERVED else f.writer
        rows.append(f"| `{f.name}` | {kind} | {writer} | {'yes' if f.public else 'no'} | "
                    f"{f.meaning.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
