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
        known_people = set(session.scalars(select(UserRow.name).where(UserRow.name.in_(people), live))) \
            if people else set()
        known_groups = {g for member in session.scalars(select(UserRow.groups).where(live)) for g in member or ()} \
            if groups else set()
        known_channels = set(session.scalars(select(ChannelRow.name).where(
            ChannelRow.name.in_(channels), ChannelRow.disabled_at.is_(None)))) if channels else set()
    found = {f"{USER}{name}": f"no person {name!r} (oms user create {name} --groups ...)"
             for name in people - known_people}
    found.update({f"{GROUP}{name}": f"no person belongs to group {name!r} (oms user create NAME --groups {name})"
                  for name in groups - known_groups})
    found.update({name: f"no channel {name!r}: create the channel first (oms channel create {name} ...)"
                  for name in channels - known_channels})
    return found
