"""Whom an escalation ladder may name, looked up when its workflow is saved: people, groups and channels.

A ``user:<name>`` target must be a person (``oms_users``, not disabled), a
``group:<name>`` one a group at least one live person belongs to, and a bare name a
channel (``oms_channels``, not disabled): a ladder naming nobody would be found out
only when its rung fires, when nobody is told.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from ..model.ladders import ASSIGNEE, GROUP, USER
from .db import transaction
from .tables import ChannelRow, UserRow


def unknown(targets: Iterable[str], database_url: str | None = None) -> dict[str, str]:
    """The targets among ``targets`` that name nobody, each with why (``assignee`` is resolved when a rung fires)."""
    wanted = {t for t in targets if t != ASSIGNEE}
    if not wanted:
        return {}
    people = {t.removeprefix(USER) for t in wanted if t.startswith(USER)}
    groups = {t.removeprefix(GROUP) for t in wanted if t.startswith(GROUP)}
    channels = {t for t in wanted if not t.startswith((USER, GROUP))}
    with transaction(database_url) as session:
        live = UserRow.disabled_at.is_(None)
        present = {row.name: row.disabled_at is None for row in session.execute(
            select(UserRow.name, UserRow.disabled_at).where(UserRow.name.in_(people)))} if people else {}
        known_groups = {g for member in session.scalars(select(UserRow.groups).where(live)) for g in member or ()} \
            if groups else set()
        defined = {row.name: row.disabled_at is None for row in session.execute(
            select(ChannelRow.name, ChannelRow.disabled_at).where(ChannelRow.name.in_(channels)))} if channels else {}
    found = {f"{USER}{name}": f"person {name!r} is disabled (oms user enable {name})" if name in present
             else f"no person {name!r} (oms user create {name} --groups ...)"
             for name in people if not present.get(name)}
    found.update({f"{GROUP}{name}": f"no person belongs to group {name!r} (oms user create NAME --groups {name})"
                  for name in groups - known_groups})
    found.update({name: f"channel {name!r} is disabled (oms channel enable {name})" if name in defined
                  else f"no channel {name!r}: create the channel first (oms channel create {name} ...)"
                  for name in channels if not defined.get(name)})
    return found
