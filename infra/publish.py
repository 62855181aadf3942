"""The page, built for a deployed stack and put behind its CloudFront: the last step of
`make deploy`, or alone after a change to static_site/ (`make publish STAGE=prod`).

    .venv/bin/python -m infra.publish --stack goodman-live-prod

The page learns the API's address here (the stack's EndpointURL output, chalice's), the
pool's ids from the API itself (/api/auth/config). Files go up with their content type
and cache rules (index.html never cached, so a new page is seen at once), then the
distribution is told to forget what it holds.
"""
from __future__ import annotations

import argparse
import mimetypes
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

#: re-asked on every load: the page names the versioned assets
NO_CACHE = ("index.html",)


def stack_outputs(cloudformation, stack: str) -> Dict[str, str]:
    found = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def upload_site(s3, bucket: str, site: Path) -> List[str]:
    """Every file of the built page, with its content type; returns the keys."""
    keys = []
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        key = path.relative_to(site).as_posix()
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix == ".js":
            content_type = "text/javascript"
        cache = "no-cache" if key in NO_CACHE else "public, max-age=300"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), ContentType=content_type, CacheControl=cache)
        keys.append(key)
    return keys


def publish(outputs: Dict[str, str], s3, cloudfront=None, build_dir: Optional[Path] = None) -> List[str]:
    from static_site.build import build

    api_base = outputs["EndpointURL"].rstrip("/")
    with tempfile.TemporaryDirectory() as tmp:
        site = build(Path(build_dir or tmp) / "site", api_base=api_base)
        keys = upload_site(s3, outputs["SiteBucketName"], site)
    if cloudfront is not None:
        cloudfront.create_invalidation(DistributionId=outputs["SiteDistributionId"], InvalidationBatch={
            "Paths": {"Quantity": 1, "Items": ["/*"]}, "CallerReference": f"publish-{time.time():.0f}"})
    return keys


def main(argv=None) -> int:
    import boto3

    parser = argparse.ArgumentParser(prog="python -m infra.publish", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    outputs = stack_outputs(boto3.client("cloudformation"), args.stack)
    keys = publish(outputs, boto3.client("s3"), boto3.client("cloudfront"))
    print(f"{len(keys)} files to s3://{outputs['SiteBucketName']}; the page: {outputs['SiteUrl']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
