"""Versions written into every product's header (provenance)."""
from functools import lru_cache

GOODMAN_LIVE_VERSION = "0.2.0"


@lru_cache(maxsize=1)
def goodman_pipeline_version() -> str:
    """Read from the installed metadata: importing goodman_pipeline costs seconds."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("goodman-pipeline")
    except PackageNotFoundError:
        return "not installed"
