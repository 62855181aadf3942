"""What AWS runs, tried here from the built artefacts alone (infra/package.py): each
function's zip and layers unpacked into a clean folder, each handler imported there by
`python -I -S` (no site-packages: tests/lambda_runtime.py stands for the runtime), and
the ingest and reduction handlers fed real SQS events from moto's queues until a
simulated lamp and science frame are reduced and wavelength-calibrated."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from golive_data.index import FileIndex, file_id_for
from infra import definition as stackdef
from infra import package as pkg
from infra import sam
from tests.conftest import local_stack_apart

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_SHIM = Path(__file__).with_name("lambda_runtime.py")
SAM = ROOT / ".venv-sam" / "bin" / "sam"
#: what Lambda's python3.11 runtime provides besides the standard library
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    return pkg.build(tmp_path_factory.mktemp("package") / "package", stage="dev")


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    """The runtime's own boto3 (Lambda's python3.11 ships one): copied alone, nothing else
    of this machine's site-packages."""
    import boto3

    site, target = Path(boto3.__file__).parents[1], tmp_path_factory.mktemp("runtime")
    for name in RUNTIME_PACKAGES:
        src = site / name
        (shutil.copytree if src.is_dir() else shutil.copyfile)(src, target / name)
    return target


def unpack(package, function: str, into: Path) -> tuple:
    """A function's code as /var/task and its layers as /opt, as Lambda lays them out."""
    props = package.template["Resources"][function]["Properties"]
    task, opt = into / "task", into / "opt"
    for target, zips in ((task, [props["CodeUri"]]),
                         (opt, [package.template["Resources"][ref["Ref"]]["Properties"]["ContentUri"]
                                for ref in props.get("Layers", [])])):
        target.mkdir(parents=True)
        for rel in zips:
            with zipfile.ZipFile(package.out / rel) as zf:
                zf.extractall(target)
    return task, opt


def lambda_python(task, opt, runtime, *args, env=None, timeout=300) -> dict:
    proc = subprocess.run([sys.executable, "-I", "-S", str(RUNTIME_SHIM), "--task", str(task), "--opt", str(opt),
                           "--runtime", str(runtime), *args], capture_output=True, text=True, timeout=timeout,
                          env={"PATH": os.environ.get("PATH", ""), **(env or {})})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def functions_of(template) -> dict:
    return {name: r["Properties"] for name, r in template["Resources"].items()
            if r["Type"] == "AWS::Serverless::Function"}


def test_wheels_are_taken_only_if_lambdas_python311_loads_them():
    assert pkg.wheel_fits("cp311-cp311-manylinux_2_17_x86_64")
    assert pkg.wheel_fits("cp311-cp311-manylinux2014_x86_64")
    assert pkg.wheel_fits("cp39-abi3-manylinux_2_17_x86_64") and pkg.wheel_fits("py3-none-any")
    assert not pkg.wheel_fits("cp311-cp311-manylinux_2_28_x86_64")  # Amazon Linux 2 has glibc 2.26
    assert not pkg.wheel_fits("cp311-cp311-manylinux_2_17_aarch64")
    assert not pkg.wheel_fits("cp312-cp312-manylinux_2_17_x86_64")
    assert not pkg.wheel_fits("cp311-cp311-macosx_11_0_x86_64")


def test_every_function_fits_lambdas_limit_with_its_layers(package):
    sizes = package.sizes
    assert set(sizes) == set(functions_of(package.template))
    assert all(0 < size < pkg.UNZIPPED_LIMIT_BYTES for size in sizes.values()), sizes
    print({k: f"{v / 2**20:.1f} MB" for k, v in sorted(sizes.items())})
    # the layers hold what their packages need (goodman-pipeline's data excepted)
    sites = [package.out.parent / (package.out.name + "-work") / layer / "python" for layer in sam.LAYERS]
    assert pkg.unmet_requirements(sites) == []
    # and nothing the functions never run: test suites, goodman-pipeline's test data
    with zipfile.ZipFile(package.out / "layers" / "science.zip") as zf:
        names = zf.namelist()
    assert not any("/test_data/" in n for n in names)
    assert not any("/tests/" in n for n in names if not n.startswith("python/astropy/tests/"))
    assert any(n.startswith("python/goodman_pipeline/data/ref_comp/") for n in names)


def test_each_handler_imports_from_its_own_artefacts_alone(package, runtime, tmp_path):
    env = {"RAW_BUCKET": "r", "PRODUCTS_BUCKET": "p", "INDEX_TABLE": "t", "AWS_DEFAULT_REGION": "us-east-1"}
    seconds = {}
    for name, props in functions_of(package.template).items():
        task, opt = unpack(package, name, tmp_path / name)
        out = lambda_python(task, opt, runtime, "import", props["Handler"], env=env)
        seconds[name] = out["import_seconds"]
        for module, path in out["from"].items():
            where = runtime if module == "boto3" else opt
            assert path.startswith(str(where)), (name, module, path)
    print("import seconds from the artefacts:", seconds)
    assert set(seconds) >= {"IngestFunction", "ReduceFunction", "APIHandler", "SignedIn", "ConsistencyFunction"}


def test_the_ingest_and_reduction_handlers_reduce_a_frame_from_the_artefacts(package, runtime, tmp_path):
    """A simulated lamp and science frame go into moto's raw bucket; its notification
    puts them on the ingest queue; the ingest handler (numeric layer only) and then the
    reduction handler (both layers), each in its own clean interpreter, take the real
    SQS events until nothing is left: the science spectrum is wavelength-calibrated."""
    from infra.simulator import make_night, write_night

    plan = make_night(seed=3, night="2024-05-02", n_bias=0, n_flat=0, n_comp=1, n_science=1)
    paths = [p for p in write_night(tmp_path / "night", plan) if p.suffix == ".fits"]
    stack = local_stack_apart(visibility_timeout=30)
    try:
        env = {k: v for k, v in stack.environment().items() if v is not None}
        s3, raw = stack.client("s3"), stack.definition["raw_bucket"]
        ids = {}
        for path in paths:
            key = f"{raw['prefix']}{plan.night}/{path.name}"
            s3.put_object(Bucket=raw["name"], Key=key, Body=path.read_bytes())
            ids[path.name] = file_id_for(raw["name"], key)
        functions = functions_of(package.template)
        ingest = unpack(package, "IngestFunction", tmp_path / "ingest")
        reduction = unpack(package, "ReduceFunction", tmp_path / "reduce")
        out = lambda_python(*ingest, runtime, "poll", functions["IngestFunction"]["Handler"], stack.queue_url,
                            "--batch", "5", env=env)
        # (and S3's test event, sent when the notification was set up)
        assert out["handled"] >= len(paths) and out["failed"] == 0, out
        out = lambda_python(*reduction, runtime, "poll", functions["ReduceFunction"]["Handler"],
                            stack.reduce_queue_url, stack.background_queue_url, "--idle", "6", env=env)
        assert out["failed"] == 0 and out["handled"] >= len(paths), out
        assert out["from"]["scipy"].startswith(str(reduction[1])), out
        index = FileIndex(stack.client("dynamodb"), stack.definition["index_table"]["name"])
        science = next(f for f in plan.frames if f.kind == "science")
        item = index.get_file(ids[science.filename])
        assert item["status"] == "reduced", item
        assert item["spectra_status"] == "calibrated", item.get("spectra_reason")
        keys = {p["key"] for p in item["products"]}
        products = stack.definition["products_bucket"]["name"]
        for key in keys:
            s3.head_object(Bucket=products, Key=key)
        kinds = {p["kind"] for p in item["products"]}
        assert {"reduced", "extracted", "calibrated"} <= kinds, kinds
    finally:
        stack.stop()


def test_the_packaged_template_holds_the_api_and_passes_cfn_lint_and_sam_validate(package):
    resources = package.template["Resources"]
    assert {"RestAPI", "APIHandler", "SignedIn", "ApiHandlerRole", "SignedInRole"} <= set(resources)
    assert all("Type" in r for r in resources.values())  # no override left without chalice's resource
    api = resources["APIHandler"]["Properties"]
    assert api["CodeUri"] == "api/deployment.zip" and (package.out / api["CodeUri"]).is_file()
    env = api["Environment"]["Variables"]
    assert env["INDEX_TABLE"] == {"Ref": "IndexTable"} and env["USER_POOL_ID"] == {"Ref": "UserPool"}
    assert resources["SignedIn"]["Properties"]["Environment"] == api["Environment"]
    # the page-token key: the stack's own generated secret, resolved at deploy; nobody passes one
    assert env["PAGE_TOKEN_KEY"] == {"Fn::Sub": "{{resolve:secretsmanager:${PageTokenSecret}:SecretString}}"}
    secret = resources["PageTokenSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    assert not any("PageToken" in name for name in package.template.get("Parameters", {}))
    # the API's role is ours (least privilege), not chalice's default
    def actions(role):
        return {a for p in resources[role]["Properties"]["Policies"] for st in p["PolicyDocument"]["Statement"]
                for a in st["Action"]}

    assert "s3:PutObject" not in actions("ApiHandlerRole") and "dynamodb:Scan" not in actions("ApiHandlerRole")
    assert "sqs:SendMessage" in actions("ApiHandlerRole")
    assert actions("SignedInRole") == {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}
    assert "APIHandlerErrorsAlarm" in resources
    lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(lint), str(package.template_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if not SAM.exists():
        if os.environ.get("GOLIVE_REQUIRE_SAM"):
            pytest.fail("the SAM CLI is not installed in .venv-sam (make sam)")
        pytest.skip("the SAM CLI is not installed (make sam; make test installs it)")
    proc = subprocess.run([str(SAM), "validate", "--lint", "-t", str(package.template_file)], capture_output=True,
                          text=True, env={**os.environ, "AWS_DEFAULT_REGION": stackdef.load()["region"],
                                          "SAM_CLI_TELEMETRY": "0"}, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_chalice_config_takes_its_names_from_the_stack_definition():
    committed = json.loads((ROOT / "functions" / "api" / ".chalice" / "config.json").read_text())
    assert committed == pkg.chalice_config(stackdef.load()), "run: python -m infra.package --write-chalice-config"


def test_the_page_is_published_for_the_deployed_api(tmp_path):
    """`make deploy`'s last step against moto's S3: the page built for the stack's API
    address, every file with its content type, index.html never cached."""
    from infra.publish import publish

    stack = local_stack_apart()
    try:
        s3 = stack.client("s3")
        s3.create_bucket(Bucket="site-apart")
        outputs = {"EndpointURL": "https://abc123.execute-api.us-east-1.amazonaws.com/api/",
                   "SiteBucketName": "site-apart", "SiteDistributionId": "E123"}
        keys = publish(outputs, s3, build_dir=tmp_path)
        assert "index.html" in keys and "app.js" in keys
        page = s3.get_object(Bucket="site-apart", Key="index.html")
        assert page["ContentType"] == "text/html" and page["CacheControl"] == "no-cache"
        assert b"https://abc123.execute-api.us-east-1.amazonaws.com/api" in page["Body"].read()
        assert s3.head_object(Bucket="site-apart", Key="app.js")["ContentType"] == "text/javascript"
    finally:
        stack.stop()
