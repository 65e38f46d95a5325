"""A forked child gets none of its parent's broker connections: the app's pools are dropped, not closed.

Celery and kombu reset their pools only in children that ``multiprocessing`` or
billiard start (``register_after_fork`` runs in ``Process._bootstrap``), and they
do it by closing the inherited connections, which on AMQP shuts down the parent's
socket (``amqp.transport.close`` calls ``shutdown(SHUT_RDWR)``). A bare
``os.fork()`` (gunicorn ``--preload``, a program's own fork) resets nothing, so
the child would publish on its parent's connection. ``oms.db`` does the same for
the database pools; ``act.pull`` for the pull worker's connection.
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import kombu.pools

#: What a child inherited: kept so that it is never used, closed or collected (which would close its sockets).
_inherited: list[object] = []


def forget(*objects: object) -> None:
    """Keep ``objects`` (a parent's connections) alive and untouched for the life of this child."""
    _inherited.extend(o for o in objects if o is not None)


def _drop_broker_pools(app: Any) -> None:
    """Forget the app's connection and producer pools; the next publish opens this child's own."""
    for group in (kombu.pools.connections, kombu.pools.producers):
        for pool in group.values():
            pool._closed = True  # kombu's own after-fork hook (multiprocessing children) then leaves it alone
            forget(pool)
        group.clear()
    forget(app._pool, app.__dict__.get("amqp") and app.amqp._producer_pool)
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None
    if "control" in app.__dict__:  # broadcasts (oms doctor) publish through a pool of their own
        app.control._after_fork()



def drop_broker_pools_in_children(app: Any) -> None:
    """In every child forked from now on, forget ``app``'s broker pools (see the module's docstring)."""
    os.register_at_fork(after_in_child=partial(_drop_broker_pools, app))
