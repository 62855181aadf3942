"""Run a past night through the whole system: every FITS file in a folder goes up
through the sync agent, through the queue and functions, and comes back through the
API as index entries and products."""
from __future__ import annotations

import json
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import requests

from golive_data.index import file_id_for
from golive_data.item import FINAL_STATUSES, STATUS_FAILED
from infra.local.system import EmbeddedSystem
from sync_agent.agent import FITS_SUFFIXES


def raw_files(raw_dir: Path) -> List[Path]:
    return sorted(p for p in Path(raw_dir).iterdir() if p.is_file() and p.suffix.lower() in FITS_SUFFIXES)


def wait_final(base_url: str, file_ids: Dict[str, str], timeout: float, progress=print,
               session=None, nights: Iterable[str] = ()) -> Dict[str, dict]:
    """Poll the API (as a signed-in `session`) until every file is in a final status
    (or the time is up). With `nights`, their change feeds are followed (one request a
    look, the files that changed), as the page does; else each file is asked for."""
    deadline = time.monotonic() + timeout
    final: Dict[str, dict] = {}
    session = session or requests.Session()
    last_report = 0.0
    names = {fid: name for name, fid in file_ids.items()}
    cursors = {night: "" for night in nights}
    while len(final) < len(file_ids) and time.monotonic() < deadline:
        for night in cursors:
            while True:
                page = session.get(f"{base_url}/api/files", params={"night": night, "since": cursors[night]},
                                   timeout=10).json()
                for f in page["files"]:
                    name = names.get(f["file_id"])
                    if name is not None:
                        final.pop(name, None)
                        if f.get("status") in FINAL_STATUSES:
                            final[name] = f
                more = page["cursor"] != cursors[night] and len(page["files"]) >= 200
                cursors[night] = page["cursor"] or cursors[night]
                if not more:
                    break
        for name, fid in file_ids.items():
            if cursors or name in final:
                continue
            resp = session.get(f"{base_url}/api/files/{fid}", timeout=10)
            if resp.status_code == 200 and resp.json().get("status") in FINAL_STATUSES:
                final[name] = resp.json()
        if time.monotonic() - last_report > 2 or len(final) == len(file_ids):
            progress(f"  {len(final)}/{len(file_ids)} files in a final status")
            last_report = time.monotonic()
        if len(final) < len(file_ids):
            time.sleep(0.5 if cursors else 0.2)
    return final


def night_masters(base_url: str, nights, session=None) -> List[dict]:
    """The master calibrations made on these nights (their own entries in the index)."""
    session, masters = session or requests.Session(), []
    for night in sorted(nights):
        for kind in ("MASTER_BIAS", "MASTER_FLAT"):
            token = None
            while True:
                params = {"night": night, "type": kind, "limit": 200, **({"next": token} if token else {})}
                page = session.get(f"{base_url}/api/files", params=params, timeout=10).json()
                masters += page["files"]
                token = page.get("next")
                if not token:
                    break
    return masters


def download_products(entries: List[dict], out_dir: Path) -> int:
    count = 0
    session = requests.Session()
    for entry in entries:
        for product in entry.get("products", []):
            target = out_dir / entry["night"] / product["file_name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            resp = session.get(product["url"], timeout=60)
            resp.raise_for_status()
            target.write_bytes(resp.content)
            count += 1
    return count


#: The order and words of the science-frame count line (index `spectra_status` values).
SPECTRA_STATES = (("calibrated", "calibrated"), ("partly_calibrated", "partly calibrated"),
                  ("not_calibrated", "not calibrated"), ("waiting_for_lamp", "waiting for a lamp"),
                  ("no_targets", "no targets"), (None, "no spectra"))
_TARGET_PREFIX = re.compile(r"^target \d+: ")
_BETWEEN_TARGETS = re.compile(r"; (?=target \d+: )")


def _short(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _reasons(entry: dict) -> List[str]:
    """Why a science frame is not calibrated, one reason per distinct cause (the
    per-target prefix 'target 2: ' dropped, so one cause of two targets counts once)."""
    if entry.get("spectra_status") is None:
        return [entry.get("error") or f"no spectra step ({entry.get('status')})"]
    text = entry.get("spectra_reason") or entry["spectra_status"].replace("_", " ")
    return list(dict.fromkeys(_TARGET_PREFIX.sub("", part.strip()) for part in _BETWEEN_TARGETS.split(text)
                              if part.strip()))


def spectra_summary(entries: Iterable[dict]) -> List[str]:
    """The lines `replay` prints about science frames: each OBJECT frame's spectra status
    and why (and what would fix it), then one count line such as
    'science frames: 5, calibrated 3, not calibrated 2 (reasons: ...)'."""
    science = [e for e in entries if e.get("obstype") == "OBJECT"]
    if not science:
        return []
    lines = ["spectra:"]
    for e in science:
        state = e.get("spectra_status")
        line = f"  {e['file_name']}: {state or 'no spectra (' + str(e.get('status')) + ')'}"
        if state != "calibrated":
            line += ": " + (e.get("spectra_reason") or "; ".join(_reasons(e)))
            if e.get("spectra_fix"):
                line += f" (fix: {e['spectra_fix']})"
        lines.append(line)
        for note in e.get("calibration_notes") or []:
            lines.append(f"    calibration: {note}")
    counts = Counter(e.get("spectra_status") for e in science)
    known = {s for s, _ in SPECTRA_STATES}
    parts = [f"calibrated {counts.get('calibrated', 0)}"]
    parts += [f"{words} {counts[s]}" for s, words in SPECTRA_STATES[1:] if counts.get(s)]
    parts += [f"{s.replace('_', ' ')} {n}" for s, n in sorted(counts.items(), key=str) if s not in known]
    why = Counter(r for e in science if e.get("spectra_status") != "calibrated" for r in _reasons(e))
    line = f"science frames: {len(science)}, " + ", ".join(parts)
    if why:
        line += " (reasons: " + "; ".join(f"{_short(r)}" + (f" ×{n}" if n > 1 else "")
                                          for r, n in why.most_common()) + ")"
    lines.append(line)
    return lines


def replay(raw_dir: Path, out_dir: Path, timeout: float = 600.0, workers: int = 2,
           system: Optional[EmbeddedSystem] = None, progress=print) -> int:
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    files = raw_files(raw_dir)
    if not files:
        progress(f"no FITS files in {raw_dir}")
        return 1
    own = system is None
    # nobody waits for the newest frame of a past night: every worker may take background work
    system = system or EmbeddedSystem(workers=workers, background_workers=workers).start()
    try:
        with tempfile.TemporaryDirectory(prefix="goodman-live-replay-") as state:
            progress(f"replaying {len(files)} files from {raw_dir} through {system.url}")
            # a past night in the order it was taken: its calibrations first, so that the
            # frames they serve are reduced once, with them
            agent = system.start_sync_agent(raw_dir, Path(state), "--once", "--settle", "0", "--order", "oldest",
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            output, _ = agent.communicate(timeout=timeout)
            if agent.returncode != 0:
                progress(output)
                raise RuntimeError(f"sync agent exited with {agent.returncode}")
            uploaded = json.loads((Path(state) / "uploaded.json").read_text())
        file_ids = {name: file_id_for(system.raw_bucket, info["key"]) for name, info in uploaded.items()}
        from functions.ingest import split_key

        nights = {split_key(info["key"], system.raw_prefix)[0] for info in uploaded.values()}
        # (a key outside a night's folder is filed by its DATE-OBS: ask for each file then)
        nights = sorted(nights) if None not in nights else []
        api = system.operator().session(system.url)
        final = wait_final(system.url, file_ids, timeout, progress, session=api, nights=nights)
        # A calibration that completed late sends frames to be reduced again: wait
        # until the queue is quiet, then take the final picture.
        deadline = time.monotonic() + timeout
        while not system.idle() and time.monotonic() < deadline:
            time.sleep(0.5)
        final = wait_final(system.url, file_ids, timeout, lambda *_: None, session=api, nights=nights)
        masters = night_masters(system.url, {e["night"] for e in final.values() if e.get("night")}, session=api)
        entries = []
        for path in files:
            if path.name in final:
                entries.append(final[path.name])
            elif path.name in file_ids:
                entries.append({"file_id": file_ids[path.name], "file_name": path.name, "night": None,
                                "status": "timeout", "error": f"no final status within {timeout:.0f} s",
                                "products": []})
            else:
                entries.append({"file_id": None, "file_name": path.name, "night": None, "status": "not_uploaded",
                                "error": "the sync agent did not upload it: not a complete FITS file",
                                "products": []})
        out_dir.mkdir(parents=True, exist_ok=True)
        n_products = download_products([e for e in entries if e.get("night")] + masters, out_dir)
        (out_dir / "index.json").write_text(json.dumps(entries, indent=2, sort_keys=True))
        bad = [e for e in entries if e["status"] not in FINAL_STATUSES or e["status"] == STATUS_FAILED]
        progress(f"{len(entries)} files, {len(entries) - len(bad)} ok, {len(bad)} not; {len(masters)} master "
                 f"calibrations; {n_products} products under {out_dir}")
        for e in bad:
            progress(f"  {e['file_name']}: {e['status']}: {e.get('error')}")
        for line in spectra_summary(entries):
            progress(line)
        return 1 if bad else 0
    finally:
        if own:
            system.stop()
