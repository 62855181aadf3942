"""The reduction knobs, for the core: declared in the data layer (golive_data/parameters.py),
where the API can import them without numpy; re-exported here so that the core's
callers (`from .parameters import ReductionSettings`) need not change."""
from golive_data.parameters import *  # noqa: F401,F403
from golive_data.parameters import __all__  # noqa: F401
