"""What a notice says, the same facts for every channel: a webhook's JSON body, an e-mail's subject, text and HTML.

The facts are what the escalation wrote (:class:`oms.store.notices.Notice`); these
keys are read: ``light`` (``yellow``, ``red``), ``deadline`` (ISO 8601; else
``expires_at``) and ``overdue_by_s`` (seconds past the deadline). Every fact is
also passed on as it is, under ``facts``. The link to the instance's page is made
from ``OMS_PUBLIC_URL`` when it is set. A notice's body is the same bytes on every
attempt, so a receiver sees one signature per notice.
"""

from __future__ import annotations

import json
from datetime import timedelta
from html import escape
from typing import Any
from urllib.parse import quote

from ..durations import format_duration
from ..settings import get_settings
from ..store.outbox import Claimed


def link(instance_id: str | None) -> str | None:
    """The instance's page (``<OMS_PUBLIC_URL>/#/instances/<id>``), or ``None`` without a public URL or instance."""
    base = get_settings().public_url
    if not base or not instance_id:
        return None
    return f"{base}/#/instances/{quote(instance_id, safe='')}"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def facts(notice: Claimed) -> dict[str, Any]:
    """The facts every channel tells, in this order: the JSON body's fields (``text`` and ``facts`` besides)."""
    given = notice.facts
    deadline = given.get("deadline", given.get("expires_at"))
    return {
        "notice_id": notice.id,
        "created_at": notice.created_at.isoformat(),
        "workflow": notice.workflow_id,
        "instance_id": notice.instance_id,
        "business_key": _text(given.get("business_key")),
        "step": notice.step_id,
        "task_id": notice.task_id,
        "rung": notice.rung,
        "target": notice.target,
        "light": given.get("light"),
        "deadline": deadline if isinstance(deadline, str) else None,
        "overdue_by_s": _number(given.get("overdue_by_s")),
        "link": link(notice.instance_id),
    }


def overdue(seconds: float | None) -> str | None:
    """``1m15s over``; ``None`` when not over (or not known)."""
    if seconds is None or seconds <= 0:
        return None
    return f"{format_duration(timedelta(seconds=round(seconds)))} over"


def subject(told: dict[str, Any]) -> str:
    """One line: ``[OMS] RED epa_waste_reg / charge_fee: 1m15s over (wf-…)``."""
    light = str(told["light"] or "notice").upper()
    where = " / ".join(str(part) for part in (told["workflow"], told["step"]) if part)
    late = overdue(told["overdue_by_s"])
    return f"[OMS] {light} {where}" + (f": {late}" if late else "") + (
        f" ({told['instance_id']})" if told["instance_id"] else "")


#: The facts an e-mail and a webhook's ``text`` list, with their labels.
_LINES = (("Workflow", "workflow"), ("Instance", "instance_id"), ("Case", "business_key"), ("Step", "step"),
          ("Light", "light"), ("Deadline", "deadline"), ("Time over", "overdue_by_s"), ("Page", "link"),
          ("Notice", "notice_id"))


def _listed(told: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(label, key, value)`` of each fact that is known, as a person reads it."""
    found = []
    for label, key in _LINES:
        value = overdue(told[key]) if key == "overdue_by_s" else told[key]
        if value is not None:
            found.append((label, key, str(value)))
    return found


def text(told: dict[str, Any]) -> str:
    """The notice in plain text, a line per fact (a webhook's ``text``, an e-mail's plain part)."""
    lines = [subject(told).removeprefix("[OMS] "), ""]
    lines += [f"{label}: {value}" for label, _, value in _listed(told)]
    return "\n".join(lines) + "\n"


def html(told: dict[str, Any]) -> str:
    """The notice as a small HTML document (an e-mail's HTML part): every value escaped."""
    rows = []
    for label, key, value in _listed(told):
        shown = escape(value)
        if key == "link":
            shown = f'<a href="{escape(value, quote=True)}">{shown}</a>'
        rows.append(f'<tr><th align="left">{escape(label)}</th><td>{shown}</td></tr>')
    title = escape(subject(told).removeprefix("[OMS] "))
    return (f"<!doctype html><html><body><h3>{title}</h3><table>{''.join(rows)}</table>"
            "<p>Sent by HMS-OMS.</p></body></html>")


def body(notice: Claimed) -> bytes:
    """A webhook's JSON body: the facts, ``text`` (what Slack and Teams show) and ``facts`` as written; compact,
    keys sorted, so the same notice is the same bytes every time it is sent."""
    told = facts(notice)
    document = {**told, "text": text(told).rstrip("\n"), "facts": notice.facts}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")
