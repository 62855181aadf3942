"""What signing in costs a request: p50/p95 of the API's answers on the local stack, for
a staff user, an observer of the night's proposal and a signed-in user of none (who sees
the night's science too: the simulated night of 2024-03-14 is past its proprietary
period), against the same run's baseline, `GET /api/health` (no token, no index read);
and the parts signing in adds, timed alone.

Each signed-in request pays for the token check (RS256, keys cached), the caller's
directory entry (one GetItem, one Query) and, for a listing, the operator's aliases and
the night's schedule (three Queries) before the filter; staff skip nothing but the
filter's verdict. The night is the simulator's default night (25 frames and the masters).
The page's measuring routes (a spectrum as data, imexam, a line fit, the night's
download list) are timed as the observer.

    .venv/bin/python benchmarks/api.py [--requests 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from golive_data.index import file_id_for  # noqa: E402
from golive_data.item import FINAL_STATUSES  # noqa: E402
from infra.accounts import UserSpec  # noqa: E402
from infra.local.system import EmbeddedSystem, quiet_logging  # noqa: E402
from infra.simulator import make_night, write_night  # noqa: E402

NIGHT = "2024-03-14"


def percentile(values, q):
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def timed(session, url, n, body=None, **params):
    """ms of each of n requests: GETs with `params`, or POSTs of `body` (answered 201)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        if body is None:
            resp = session.get(url, params=params, timeout=30)
        else:
            resp = session.post(url, json=body, timeout=30)
        times.append((time.perf_counter() - start) * 1000)
        assert resp.status_code == (200 if body is None else 201), resp.text
    return times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args(argv)
    quiet_logging()
    with EmbeddedSystem(workers=2) as system, tempfile.TemporaryDirectory() as tmp:
        write_night(Path(tmp), make_night(seed=1))
        s3 = system.stack.client("s3")
        ids = []
        for path in sorted(Path(tmp).glob("*.fits")):
            key = f"{system.raw_prefix}{NIGHT}/{path.name}"
            s3.put_object(Bucket=system.raw_bucket, Key=key, Body=path.read_bytes())
            ids.append(file_id_for(system.raw_bucket, key))
        system.add_users([UserSpec("bench-observer", "bench-observer-1", proposals=["SIMULATED"]),
                          UserSpec("bench-nobody", "bench-nobody-pass-1")])
        staff = system.operator().session(system.url)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            files = staff.get(system.url + "/api/files", params={"night": NIGHT, "limit": 500}, timeout=30).json()
            if len(files["files"]) >= len(ids) and all(f["status"] in FINAL_STATUSES for f in files["files"]):
                break
            time.sleep(1)
        system.wait_idle(timeout=120)
        sessions = {"staff": staff,
                    "observer": system.signed_in("bench-observer", "bench-observer-1").session(system.url),
                    "no proposal": system.signed_in("bench-nobody", "bench-nobody-pass-1").session(system.url)}
        one = ids[-3]   # a science frame
        rows = [("GET /api/health (baseline, no token)", timed(requests.Session(), system.url + "/api/health",
                                                                 args.requests))]
        for who, session in sessions.items():
            shown = len(session.get(system.url + "/api/files", params={"night": NIGHT, "limit": 500},
                                    timeout=30).json()["files"])
            rows.append((f"GET /api/files, {who} ({shown} files shown)",
                         timed(session, system.url + "/api/files", args.requests, night=NIGHT, limit=500)))
            rows.append((f"GET /api/nights, {who}", timed(session, system.url + "/api/nights", args.requests)))
            if who != "no proposal":
                rows.append((f"GET /api/files/{{id}}, {who}", timed(session, f"{system.url}/api/files/{one}",
                                                                    args.requests)))
        # the page's measuring routes, as the observer (the products read from storage once, then checked)
        observer, base_url = sessions["observer"], f"{system.url}/api/files/{one}"
        item = observer.get(base_url, timeout=30).json()
        spectra = item.get("spectra") or []
        if spectra:
            x, y = item["spectra_shape"][1] // 2, int(round(spectra[0]["row"]))
            data = observer.get(base_url + "/spectrum", params={"target": 1}, timeout=30).json()
            rows.append((f"GET .../spectrum ({len(data['x'])} px, lamp, sky)",
                         timed(observer, base_url + "/spectrum", args.requests, target=1)))
            rows.append(("GET .../imexam on the trace (box 21)",
                         timed(observer, base_url + "/imexam", args.requests, x=x, y=y, box=21)))
            window = {"target": 1, "window": [6500.0, 6625.0], "model": "gaussian", "rest_wavelength": 6562.8}
            rows.append(("POST .../linefit, H-alpha (Gaussian, kept)",
                         timed(observer, base_url + "/linefit", min(args.requests, 100), window)))
        rows.append(("GET /api/nights/{night}/downloads, observer",
                     timed(observer, f"{system.url}/api/nights/{NIGHT}/downloads", args.requests)))
        # the parts of a signed-in request that signing in adds, timed alone
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "functions" / "api"))
        from chalicelib import auth
        from golive_data.access import Directory
        from golive_data.settings import Settings

        settings = Settings.from_env()
        pool = auth.Pool(settings.region, settings.user_pool_id, settings.user_pool_client_id,
                         settings.cognito_endpoint)
        keys, token = auth.Keys(pool.jwks_url), system.signed_in("bench-observer", "bench-observer-1").token
        auth.verify(token, pool, keys)
        directory = Directory(system.stack.client("dynamodb"), settings.index_table)
        for name, call in (("token check (RS256, keys cached)", lambda: auth.verify(token, pool, keys)),
                           ("caller's directory entry (GetItem + Query)", lambda: directory.principal("bench-observer")),
                           ("aliases + the night's schedule (3 Queries)", lambda: directory.resolver([NIGHT]))):
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                call()
                times.append((time.perf_counter() - start) * 1000)
            rows.append((f"  {name}", times))
    base = statistics.median(rows[0][1])
    print(f"{'request':58s} {'p50 ms':>8s} {'p95 ms':>8s} {'p50 - baseline':>15s}")
    for name, times in rows:
        p50 = percentile(times, 0.5)
        print(f"{name:58s} {p50:8.1f} {percentile(times, 0.95):8.1f} {p50 - base:15.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
