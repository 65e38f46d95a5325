"""``oms demo``: the seed's EPA hazardous-waste registration lab, end to end, in one command.

Everything runs in real processes on whatever is configured (by default SQLite
and the filesystem broker in the working directory): a Celery worker with beat
for the push steps, the SLA scanner and the escalations; the seed's tax
validator as a pull worker; a few registrations, the last one late on purpose so
that a step turns red and is escalated. The modules hold one part each:

- :mod:`.workflow`: the demo's variant of the seed's definition, and its knobs
- :mod:`.handlers`: the push handlers the demo's worker imports (``-I oms.demo.handlers``)
- :mod:`.tax_validator`: the pull worker (``python -m oms.demo.tax_validator``)
- :mod:`.processes`: starting and stopping those processes
- :mod:`.view`: the live table and the summary
- :mod:`.runner`: the run itself
"""

from __future__ import annotations

from .runner import run

__all__ = ["run"]
