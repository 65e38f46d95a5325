"""``oms report``: the monthly SLA report (:mod:`oms.ops.sla_report`) as a table, CSV, JSON or an HTML page."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from html import escape

import click

from ..ops.sla_report import FIGURES, ReportRow, SlaReport, WorstInstance, sla_report
from .base import CONTEXT, die, env_option
from .render import seconds, table

#: The CSV's columns, in order: one line per workflow, step and calendar.
COLUMNS = ("workflow", "step", "calendar", "kind", "sla_s", "finished", "within_sla", "late", "share_within",
           "breaches", "over_s", *(f"{figure}_{p}_s" for figure in FIGURES for p in ("p50", "p90", "p99")),
           "worst_instances")


def _day(text: str, name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        die(f"{name} {text!r} is not a date (YYYY-MM-DD)")


def _step(row: ReportRow) -> str:
    return row.step_id if row.step_id is not None else "(whole workflow)"


def _share(row: ReportRow) -> str:
    return "-" if row.share_within is None else f"{100 * row.share_within:.1f}%"


def _triple(row: ReportRow, figure: str) -> str:
    found = getattr(row, figure)
    return " / ".join(seconds(getattr(found, p)) for p in ("p50_s", "p90_s", "p99_s"))


def _values(row: ReportRow) -> dict[str, object]:
    values: dict[str, object] = {
        "workflow": row.workflow_id, "step": row.step_id or "", "calendar": row.calendar_id or "", "kind": row.kind,
        "sla_s": "" if row.sla_s is None else row.sla_s, "finished": row.finished, "within_sla": row.within_sla,
        "late": row.late, "share_within": "" if row.share_within is None else round(row.share_within, 4),
        "breaches": row.breaches, "over_s": row.over_s,
        "worst_instances": " ".join(w.instance_id for w in row.worst)}
    for figure in FIGURES:
        for p in ("p50", "p90", "p99"):
            value = getattr(getattr(row, figure), f"{p}_s")
            values[f"{figure}_{p}_s"] = "" if value is None else value
    return values


def as_csv(report: SlaReport) -> str:
    """One line per workflow, step and calendar, times in working seconds; the worst instances' ids, worst first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in report.rows:
        writer.writerow(_values(row))
    return out.getvalue()


_STYLE = """body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328}
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.25rem .6rem;border-bottom:1px solid #d0d7de;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{color:#57606a}.late{color:#cf222e;font-weight:600}
.muted{color:#57606a}"""


def as_html(report: SlaReport) -> str:
    """A page to send on: the period, a line per workflow, step and calendar, and the worst instances, linked."""
    head = ("<tr><th>workflow</th><th>step</th><th>calendar</th><th>SLA</th><th>finished</th><th>within SLA</th>"
            "<th>late</th><th>breaches</th><th>queue wait p50 / p90 / p99</th><th>run p50 / p90 / p99</th>"
            "<th>total p50 / p90 / p99</th><th>time over (sum)</th></tr>")
    lines = []
    for row in report.rows:
        texts = [row.workflow_id, _step(row), row.calendar_id or "wall time", seconds(row.sla_s)]
        numbers = [str(row.finished), _share(row), str(row.late), str(row.breaches)]
        times = [_triple(row, "queue_wait"), _triple(row, "run"), _triple(row, "total"), seconds(row.over_s)]
        lines.append("<tr>" + "".join(f"<td>{escape(t)}" for t in texts) + "".join(
            f'<td class="n">{escape(n)}' for n in numbers) + "".join(f"<td>{escape(t)}" for t in times) + "</tr>")
    late = [f'<tr><td>{escape(row.workflow_id)}<td>{escape(_step(row))}<td><a href="{escape(w.link, quote=True)}">'
            f'{escape(w.instance_id)}</a><td>{escape(w.business_key or "")}<td>{w.finished_at:%Y-%m-%d %H:%M}'
            f'<td class="n late">{seconds(w.over_s)}<td class="n">{seconds(w.total_s)}</tr>'
            for row, w in _worst(report)]
    title = f"SLA report {report.since} to {report.until}" + (f", {report.workflow}" if report.workflow else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title><style>{_STYLE}</style></head>
<body><h1>{escape(title)}</h1>
<p class="muted">Whole UTC days from {report.since} to {report.until} (excluded). Times are working time (each
calendar's opening hours; wall time without one); percentiles are read from log-spaced buckets, within
{100 * report.precision:.1f}%. A breach counts on the day its deadline passed, a step on the day it finished.</p>
<table><thead>{head}</thead><tbody>{"".join(lines) or '<tr><td colspan="12">No step finished in this period.'}
</tbody></table>
<h2>The worst instances</h2>
<table><thead><tr><th>workflow</th><th>step</th><th>instance</th><th>business key</th><th>finished (UTC)</th>
<th>over the SLA</th><th>total</th></tr></thead><tbody>{"".join(late) or '<tr><td colspan="7">None finished.'}
</tbody></table>
<p class="muted">Made {datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by oms report.</p>
</body></html>
"""


def _worst(report: SlaReport) -> list[tuple[ReportRow, WorstInstance]]:
    """The ten worst finished instances of the period, each with its row: most time over the SLA, then longest."""
    return sorted(((row, w) for row in report.rows for w in row.worst),
                  key=lambda rw: (rw[1].over_s, rw[1].total_s), reverse=True)[:10]


def _table(report: SlaReport) -> None:
    click.echo(f"SLA report {report.since} to {report.until} (excluded; UTC days), working time, percentiles within "
               f"{100 * report.precision:.1f}%")
    table(["workflow", "step", "calendar", "SLA", "finished", "within", "late", "breaches", "queue p50/p90/p99",
           "run p50/p90/p99", "total p50/p90/p99", "over (sum)"],
          [[row.workflow_id, _step(row), row.calendar_id or "-", seconds(row.sla_s), str(row.finished),
            _share(row), str(row.late), str(row.breaches), _triple(row, "queue_wait"), _triple(row, "run"),
            _triple(row, "total"), seconds(row.over_s)] for row in report.rows])
    worst = _worst(report)
    if worst:
        click.echo("\nThe worst instances")
        table(["workflow", "step", "instance", "over", "total", "link"],
              [[row.workflow_id, _step(row), w.instance_id, seconds(w.over_s), seconds(w.total_s), w.link]
               for row, w in worst])


@click.command(context_settings=CONTEXT)
@env_option("--since", env="OMS_REPORT_SINCE", required=True, metavar="DATE",
            help="The first UTC day of the period (2026-11-01).")
@env_option("--until", env="OMS_REPORT_UNTIL", required=True, metavar="DATE",
            help="The UTC day after its last (2026-12-01: the period ends with November).")
@env_option("--workflow", env="OMS_WORKFLOW", metavar="ID", help="One workflow only.")
@env_option("--format", "format_", env="OMS_REPORT_FORMAT", default="table", show_default=True,
            type=click.Choice(["table", "csv", "json", "html"]), help="What to print.")
@env_option("--base-url", env="OMS_PUBLIC_URL", default="", metavar="URL",
            help="The page's public address, for the instances' links (default: links relative to it).")
def report(since: str, until: str, workflow: str | None, format_: str, base_url: str) -> None:
    """The SLA report of a period: per workflow, step and calendar, steps finished, the share within their SLA,
    breaches, p50/p90/p99 of queue wait, run and total time (working time), the time over, the worst instances.

    Read from the rollups of the event log, so a month of a million steps takes seconds, and it reads the same
    after `oms prune`.

    \b
    Examples:
      oms report --since 2026-11-01 --until 2026-12-01
      oms report --since 2026-11-01 --until 2026-12-01 --workflow epa_waste_reg --format csv > november.csv
      oms report --since 2026-11-01 --until 2026-12-01 --format html --base-url https://oms.example.org > nov.html
    """
    found = sla_report(_day(since, "--since"), _day(until, "--until"), workflow, base_url=base_url)
    if format_ == "json":
        click.echo(found.model_dump_json(indent=2))
    elif format_ == "csv":
        click.echo(as_csv(found), nl=False)
    elif format_ == "html":
        click.echo(as_html(found), nl=False)
    else:
        _table(found)
