"""CPU time of the processes a benchmark does not own: PostgreSQL's server processes, read from ``/proc``."""

from __future__ import annotations

import os


def postgres_cpu() -> float:
    """CPU seconds used so far by every PostgreSQL process on this machine, those that have exited included: a
    backend's time goes to the postmaster's children's time (``cutime``, ``cstime``) when it ends, as when a client
    process disconnects before the measurement ends."""
    total = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.index("(") + 1 : stat.rindex(")")].startswith("postgres"):
                fields = stat[stat.rindex(")") + 2 :].split()
                total += sum(int(ticks) for ticks in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")
