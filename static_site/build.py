"""Render the page's templates into a static folder (S3 + CloudFront in AWS, the
local server on this machine). Page data comes from `context()`, a pure function.

BokehJS (the plots in `assets/plots.js`) is served from the same folder, copied from
the installed `bokeh` package (pinned in requirements.txt), never from a CDN: the
page works on the mountain's own network and loads nothing from another host."""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from golive_data.item import FILE_TYPES

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
ASSETS = HERE / "assets"
DEFAULT_OUT = HERE / "build"

#: The BokehJS bundles the Plotting API needs: the core and the `Bokeh.Plotting` API.
#: Not bokeh-widgets/-tables (no Bokeh widgets: the controls are plain HTML), -gl (no
#: WebGL backend) or -mathjax (no TeX in labels).
BOKEH_BUNDLES = ("bokeh", "bokeh-api")
#: Written into plots.js when it is copied, so it asks for the files copied beside it.
BOKEH_VERSION_PLACEHOLDER = "@BOKEH_VERSION@"


class BuildError(RuntimeError):
    """The site cannot be built as asked (e.g. bokeh is not installed)."""


def bokeh_static() -> Tuple[str, Path]:
    """The installed bokeh's version and its folder of BokehJS bundles."""
    try:
        import bokeh
        from bokeh.util.paths import bokehjs_path
    except ImportError as exc:
        raise BuildError("the page's plots need BokehJS from the bokeh package, which is not installed: "
                         "`pip install -r requirements.txt` (bokeh is pinned there)") from exc
    js_dir = bokehjs_path() / "js"
    missing = [f"{name}.min.js" for name in BOKEH_BUNDLES if not (js_dir / f"{name}.min.js").is_file()]
    if missing:
        raise BuildError(f"bokeh {bokeh.__version__} is installed but {', '.join(missing)} is missing from {js_dir}")
    return bokeh.__version__, js_dir


def copy_bokeh(out_dir: Path) -> str:
    """Copy BokehJS into `out_dir/bokeh/` as `<bundle>-<version>.min.js` (a new version
    is a new URL, so no cache serves an old one) with a `VERSION` file; returns the version."""
    version, js_dir = bokeh_static()
    target = Path(out_dir) / "bokeh"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in BOKEH_BUNDLES:
        shutil.copy2(js_dir / f"{name}.min.js", target / f"{name}-{version}.min.js")
    (target / "VERSION").write_text(version + "\n")
    return version


#: how often the page asks for changes: a file indexed shows within this plus one request
#: (the goal is 2 s); each ask is one Query of the change feed
POLL_SECONDS = 1.0


def context(api_base: str = "", poll_seconds: float = POLL_SECONDS) -> Dict[str, Any]:
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
    bokeh_version = copy_bokeh(out_dir)   # first: without bokeh, fail before writing a page
    for template in sorted(TEMPLATES.glob("*.html.j2")):
        (out_dir / template.name[:-3]).write_text(env.get_template(template.name).render(**ctx))
    for asset in sorted(ASSETS.iterdir()):
        if asset.name == "plots.js":
            text = asset.read_text()
            if BOKEH_VERSION_PLACEHOLDER not in text:
                raise BuildError(f"{asset} does not name {BOKEH_VERSION_PLACEHOLDER}: it would not find BokehJS")
            (out_dir / asset.name).write_text(text.replace(BOKEH_VERSION_PLACEHOLDER, bokeh_version))
        else:
            shutil.copy2(asset, out_dir / asset.name)
    return out_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m static_site.build")
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--api-base", default="", help="API origin when not served beside the page")
    args = parser.parse_args(argv)
    try:
        print(build(Path(args.out), api_base=args.api_base))
    except BuildError as exc:
        print(f"static_site.build: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
