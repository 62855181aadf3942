"""Everything AWS runs, built on this machine without an AWS account: the functions'
code, two layers of wheels built for Lambda's platform, the API's package (chalice),
and the one template that names them all.

    .venv/bin/python -m infra.package [--stage prod] [--out build/package]

then `sam deploy --template-file build/package/template.json ...` (the Makefile's
`deploy`) uploads the zips as they are: nothing is rebuilt at deploy time, so what the
tests ran (tests/test_package.py) is what goes up.

Why layers and not a container image: measured (the `sizes` this prints), the
reduction with both layers is well under Lambda's 250 MB unzipped limit once tests,
headers and goodman-pipeline's 118 MB of test data are left out; a zip needs no
registry, and no Docker engine to build or test.

Why python3.11 on x86_64: the artefacts are imported and run here, from the zips
alone, by this machine's Python 3.11 on x86_64 before they are deployed. That runtime
runs on Amazon Linux 2 (glibc 2.26), so only wheels built for glibc <= 2.26 are
taken (`check_wheels`); see layers/*/requirements.txt for the versions that implies.
"""
from __future__ import annotations

import argparse
import compileall
import json
import os
import py_compile
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from infra import definition as stackdef
from infra import sam

ROOT = Path(__file__).resolve().parent.parent
LAYERS_DIR = ROOT / "layers"
API_DIR = ROOT / "functions" / "api"
CHALICE_CONFIG = API_DIR / ".chalice" / "config.json"
DEFAULT_OUT = ROOT / "build" / "package"
PYTHON_VERSION = (3, 11)
#: Amazon Linux 2, which Lambda's python3.11 runtime runs on
GLIBC_MAX = (2, 26)
#: Lambda's limit on a function and its layers, unzipped
UNZIPPED_LIMIT_BYTES = 250 * 1024 * 1024
#: what Lambda's Python runtime provides: not bundled, and not required of the layers
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"})
#: installed for their data only, their own requirements not met on purpose
DATA_ONLY = frozenset({"goodman-pipeline"})
#: dropped from the layers: test suites and their data, C sources and headers, stubs,
#: console scripts made for the build machine's interpreter
DROP_DIRS = ("tests", "test_data", "include", "__pycache__")
DROP_SUFFIXES = (".pyx", ".pxd", ".pxi", ".c", ".cpp", ".h", ".hpp", ".pyi")
#: `tests` packages imported at run time (astropy's test runner by astropy/__init__,
#: numpy's by numpy.testing, which scipy imports)
KEEP_DIRS = ("astropy/tests", "numpy/_core/tests")


class PackageError(RuntimeError):
    """The artefacts cannot be built as Lambda needs them."""


def platform_tags() -> List[str]:
    """The wheel platforms Lambda's python3.11 runtime loads on x86_64."""
    return ["manylinux2014_x86_64"] + [f"manylinux_2_{n}_x86_64" for n in range(17, GLIBC_MAX[1] + 1)]


def requirements(layer: str) -> List[str]:
    lines = (LAYERS_DIR / layer / "requirements.txt").read_text().splitlines()
    return [ln.split("#")[0].strip() for ln in lines if ln.split("#")[0].strip()]


def install_layer(layer: str, site: Path) -> None:
    """pip, for Lambda's platform and Python, without dependencies: the lists are whole
    (`unmet_requirements` checks), so nothing arrives that nobody asked for."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
           "--only-binary=:all:", "--implementation", "cp", "--abi", "cp311",
           "--python-version", "%d.%d" % PYTHON_VERSION, "--target", str(site)]
    for tag in platform_tags():
        cmd += ["--platform", tag]
    subprocess.run(cmd + ["-r", str(LAYERS_DIR / layer / "requirements.txt")], check=True)


_MANYLINUX = re.compile(r"manylinux_(\d+)_(\d+)_(\w+)$")


def wheel_fits(tag: str) -> bool:
    """Whether a wheel tag (`cp311-cp311-manylinux_2_17_x86_64`) loads in the runtime."""
    python, abi, platform = tag.split("-")
    if not (python in ("py3", "py2.py3", "cp311") or (abi == "abi3" and python.startswith("cp3")
                                                      and int(python[3:]) <= 11)):
        return False
    if platform == "any":
        return True
    platform = platform.replace("manylinux2014_", "manylinux_2_17_")
    found = _MANYLINUX.match(platform)
    return bool(found) and found.group(3) == "x86_64" and (int(found.group(1)), int(found.group(2))) <= GLIBC_MAX


def check_wheels(site: Path) -> List[str]:
    """Every installed wheel's tags; raises if one would not load in the runtime."""
    tags = []
    for wheel in sorted(site.glob("*.dist-info/WHEEL")):
        mine = [ln.split(":", 1)[1].strip() for ln in wheel.read_text().splitlines() if ln.startswith("Tag:")]
        if not any(wheel_fits(t) for t in mine):
            raise PackageError(f"{wheel.parent.name}: no tag Lambda's {sam.RUNTIME} loads: {mine}")
        tags.extend(mine)
    return tags


def unmet_requirements(sites: Sequence[Path]) -> List[str]:
    """What a package in these folders requires and neither they nor the runtime hold."""
    from importlib.metadata import distributions

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    dists = {canonicalize_name(d.metadata["Name"]): d for d in distributions(path=[str(s) for s in sites])}
    unmet = []
    for name, dist in sorted(dists.items()):
        if name in DATA_ONLY:
            continue
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            wanted = canonicalize_name(req.name)
            if wanted in RUNTIME_PROVIDED:
                continue
            have = dists.get(wanted)
            if have is None or not req.specifier.contains(have.version, prereleases=True):
                unmet.append(f"{name} requires {text}" + (f" (has {have.version})" if have else ""))
    return unmet


def trim(site: Path) -> int:
    """Drop what no function runs; returns the bytes dropped."""
    dropped = 0
    for path in sorted(site.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if not path.exists() or path.is_symlink():
            continue
        rel = path.relative_to(site).as_posix()
        if path.is_dir() and path.name in DROP_DIRS and not any(rel.endswith(k) for k in KEEP_DIRS):
            dropped += tree_bytes(path)
            shutil.rmtree(path)
        elif path.is_file() and path.suffix in DROP_SUFFIXES:
            dropped += path.stat().st_size
            path.unlink()
    if (site / "bin").is_dir():
        dropped += tree_bytes(site / "bin")
        shutil.rmtree(site / "bin")
    return dropped


def compile_tree(root: Path, sourceless: bool = False) -> None:
    """Byte-compile for the runtime: Lambda's /opt and /var/task are read-only, so a
    module without its .pyc is compiled again at every cold start. Unchecked hashes:
    the zip's timestamps are not the sources'.

    `sourceless` (the layers): each module's .pyc in place of its .py, which halves
    the Python in the layers (31 MB of sources); tracebacks inside the libraries then
    show no source lines. Our own code keeps its sources."""
    if sys.version_info[:2] != PYTHON_VERSION:
        raise PackageError(f"build with Python {PYTHON_VERSION[0]}.{PYTHON_VERSION[1]} (the runtime's), "
                           f"not {sys.version_info[0]}.{sys.version_info[1]}")
    ok = compileall.compile_dir(str(root), quiet=2, workers=0, legacy=sourceless,
                                invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    if not ok:
        raise PackageError(f"could not byte-compile {root}")
    if sourceless:
        for source in root.rglob("*.py"):
            if source.with_suffix(".pyc").is_file():
                source.unlink()


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def zip_tree(root: Path, target: Path) -> Path:
    """A reproducible zip: sorted entries, fixed times, the files' own modes."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(root).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
    return target


def _copy_source(src: Path, dst: Path, skip: Iterable[str] = ()) -> None:
    shutil.copytree(src, dst, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *skip))


def build_layer(layer: str, work: Path, out: Path) -> Path:
    site = work / layer / "python"
    shutil.rmtree(work / layer, ignore_errors=True)
    install_layer(layer, site)
    check_wheels(site)
    trim(site)
    compile_tree(site, sourceless=True)
    return zip_tree(work / layer, out / "layers" / f"{layer}.zip")


def build_code(work: Path, out: Path) -> Path:
    """The backend functions' code (one zip for all: they share the reduction core)."""
    code = work / "functions"
    shutil.rmtree(code, ignore_errors=True)
    code.mkdir(parents=True)
    _copy_source(ROOT / "functions", code / "functions", skip=("api",))
    _copy_source(ROOT / "golive_data", code / "golive_data")
    compile_tree(code)
    return zip_tree(code, out / "functions.zip")


def chalice_config(d: Dict) -> Dict:
    """functions/api/.chalice/config.json, from the stack definition: the names the API
    finds locally; in AWS the template sets them to the stack's resources."""
    stage = {"api_gateway_stage": "api", "lambda_memory_size": d["api_function"]["memory_mb"],
             "lambda_timeout": d["api_function"]["timeout_seconds"], "autogen_policy": False,
             "environment_variables": stackdef.environment(d)}
    return {"version": "2.0", "app_name": d["api_function"]["app_name"],
            "api_gateway_endpoint_type": "REGIONAL", "stages": {name: stage for name in ("dev", "prod")}}


def build_api(work: Path, out: Path, merge_template: Dict, stage: str) -> Dict:
    """`chalice package --merge-template`: chalice's API Gateway and handler resources
    with ours merged over them. Returns the merged template."""
    app = work / "api"
    shutil.rmtree(app, ignore_errors=True)
    _copy_source(API_DIR, app, skip=("vendor", "deployments"))
    _copy_source(ROOT / "golive_data", app / "vendor" / "golive_data")
    # chalice wants a policy file when it does not write one; the merge puts the
    # API's own role policy (infra/sam.py) in its place
    (app / ".chalice" / f"policy-{stage}.json").write_text(json.dumps({"Version": "2012-10-17", "Statement": []}))
    merge = work / "merge.json"
    merge.write_text(json.dumps(merge_template, indent=1))
    target = work / "api-package"
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
    chalice = Path(sys.executable).with_name("chalice")
    subprocess.run([str(chalice), "--project-dir", str(app), "package", "--stage", stage,
                    "--merge-template", str(merge), str(target)], check=True, env=env, stdout=subprocess.DEVNULL)
    (out / "api").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(target / "deployment.zip", out / "api" / "deployment.zip")
    template = json.loads((target / "sam.json").read_text())
    for resource in template["Resources"].values():
        if resource["Properties"].get("CodeUri") == "./deployment.zip":
            resource["Properties"]["CodeUri"] = "api/deployment.zip"
    return template


def unzipped_sizes(out: Path, template: Dict) -> Dict[str, int]:
    """Each function's code and layers, unzipped: what Lambda holds to its 250 MB."""
    def unzipped(rel: str) -> int:
        with zipfile.ZipFile(out / rel) as zf:
            return sum(i.file_size for i in zf.infolist())

    layers = {name: r["Properties"]["ContentUri"] for name, r in template["Resources"].items()
              if r["Type"] == "AWS::Serverless::LayerVersion"}
    sizes = {}
    for name, r in template["Resources"].items():
        if r["Type"] == "AWS::Serverless::Function":
            props = r["Properties"]
            sizes[name] = unzipped(props["CodeUri"]) + sum(unzipped(layers[ref["Ref"]])
                                                           for ref in props.get("Layers", []))
    return sizes


@dataclass
class Package:
    out: Path
    template: Dict
    sizes: Dict[str, int]

    @property
    def template_file(self) -> Path:
        return self.out / "template.json"


def build(out: Path = DEFAULT_OUT, stage: str = "dev", layers: bool = True) -> Package:
    """All artefacts and the packaged template. `layers=False` keeps layer zips already
    in `out` (they change only with layers/*/requirements.txt)."""
    d = stackdef.load()
    out.mkdir(parents=True, exist_ok=True)
    work = out.parent / (out.name + "-work")
    for layer in sam.LAYERS:
        if layers or not (out / "layers" / f"{layer}.zip").exists():
            build_layer(layer, work, out)
    build_code(work, out)
    merged = build_api(work, out, sam.build_template(d, with_api=True), stage)
    sizes = unzipped_sizes(out, merged)
    too_big = {k: v for k, v in sizes.items() if v > UNZIPPED_LIMIT_BYTES}
    if too_big:
        raise PackageError(f"over Lambda's 250 MB unzipped: {too_big}")
    package = Package(out, merged, sizes)
    package.template_file.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    (out / "sizes.json").write_text(json.dumps(sizes, indent=1, sort_keys=True) + "\n")
    return package


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.package", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--stage", default="dev", choices=("dev", "prod"), help="the chalice stage packaged")
    parser.add_argument("--keep-layers", action="store_true", help="reuse layer zips already built")
    parser.add_argument("--write-chalice-config", action="store_true",
                        help="only rewrite functions/api/.chalice/config.json from infra/stack.json")
    args = parser.parse_args(argv)
    if args.write_chalice_config:
        CHALICE_CONFIG.write_text(json.dumps(chalice_config(stackdef.load()), indent=2) + "\n")
        print(CHALICE_CONFIG)
        return 0
    package = build(Path(args.out), args.stage, layers=not args.keep_layers)
    for name, size in sorted(package.sizes.items()):
        print(f"{name:32s} {size / 2**20:7.1f} MB unzipped (limit 250)")
    print(package.template_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
