"""The specification's name for :mod:`oms` (``from hms_oms import Workflow``)."""

from oms import *  # noqa: F403
from oms import __all__  # noqa: F401
