"""The specification's name for :mod:`act` (``from hms_act import fetch_task``)."""

from act import *  # noqa: F403
from act import __all__  # noqa: F401
