"""Render the page's templates into a static folder (S3 + CloudFront in AWS, the
local server on this machine). Page data comes from `context()`, a pure function."""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path
from typing import Any, Dict

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from golive_data.item import FILE_TYPES

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
ASSETS = HERE / "assets"
DEFAULT_OUT = HERE / "build"


def context(api_base: str = "", poll_seconds: float = 1.5) -> Dict[str, Any]:
    return {
        "title": "Goodman Live",
        "api_base": api_base.rstrip("/"),
        "poll_ms": int(poll_seconds * 1000),
        "obstypes": list(FILE_TYPES),
    }


def build(out_dir: Path = DEFAULT_OUT, **kwargs) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, keep_trailing_newline=True)
    ctx = context(**kwargs)
    for template in sorted(TEMPLATES.glob("*.html.j2")):
        (out_dir / template.name[:-3]).write_text(env.get_template(template.name).render(**ctx))
    for asset in sorted(ASSETS.iterdir()):
        shutil.copy2(asset, out_dir / asset.name)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m static_site.build")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--api-base", default="", help="API origin when not served beside the page")
    args = parser.parse_args(argv)
    print(build(Path(args.out), api_base=args.api_base))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
