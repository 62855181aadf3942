"""Cold start of each function from its built artefacts: the seconds a fresh interpreter
takes to import the handler from the unpacked zip and layers (Lambda's init phase,
less the runtime's own start and the download of the zips), compared in the same run
with the same import from the .venv (sources and pyc cache of a developer machine).
The first reduction after it is not measured here.

    .venv/bin/python benchmarks/coldstart.py [--runs 5] [--package build/package]

Builds the package first when --package holds none (`make package`)."""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infra import package as pkg  # noqa: E402
from tests.test_package import RUNTIME_SHIM, functions_of, unpack  # noqa: E402

#: the handlers whose start an observer waits on, and the API's
MEASURED = ("IngestFunction", "ReduceFunction", "APIHandler")
ENV = {"RAW_BUCKET": "r", "PRODUCTS_BUCKET": "p", "INDEX_TABLE": "t", "AWS_DEFAULT_REGION": "us-east-1"}


def _runtime(into: Path) -> Path:
    import shutil

    import boto3

    from tests.test_package import RUNTIME_PACKAGES

    site = Path(boto3.__file__).parents[1]
    for name in RUNTIME_PACKAGES:
        (shutil.copytree if (site / name).is_dir() else shutil.copyfile)(site / name, into / name)
    return into


def artefact_import(task: Path, opt: Path, runtime: Path, handler: str) -> float:
    proc = subprocess.run([sys.executable, "-I", "-S", str(RUNTIME_SHIM), "--task", str(task), "--opt", str(opt),
                           "--runtime", str(runtime), "import", handler], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **ENV}, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["import_seconds"]


def venv_import(handler: str, cwd: Path) -> float:
    module, name = handler.rsplit(".", 1)
    code = ("import sys, time; sys.path[:0] = ['.', 'vendor']; t = time.perf_counter(); import importlib; "
            f"getattr(importlib.import_module('{module}'), '{name}'); print(time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", **ENV}, check=True)
    return float(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--package", default=str(pkg.DEFAULT_OUT))
    args = parser.parse_args(argv)
    out = Path(args.package)
    if not (out / "template.json").exists():
        pkg.build(out)
    package = pkg.Package(out, json.loads((out / "template.json").read_text()), {})
    functions = functions_of(package.template)
    print(f"{'function':18s} {'artefact p50':>13s} {'max':>6s} {'.venv p50':>10s}  (import seconds, {args.runs} runs)")
    with tempfile.TemporaryDirectory() as tmp:
        runtime = _runtime(Path(tmp) / "runtime")
        for name in MEASURED:
            task, opt = unpack(package, name, Path(tmp) / name)
            handler = functions[name]["Handler"]
            cwd = ROOT / "functions" / "api" if name == "APIHandler" else ROOT
            started = time.perf_counter()
            ours = [artefact_import(task, opt, runtime, handler) for _ in range(args.runs)]
            base = [venv_import(handler, cwd) for _ in range(args.runs)]
            print(f"{name:18s} {statistics.median(ours):13.3f} {max(ours):6.3f} {statistics.median(base):10.3f}"
                  f"  ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
