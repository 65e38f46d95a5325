"""``oms prune``: delete finished instances, with their tasks, events and notices, in batches."""

from __future__ import annotations

from datetime import UTC

import click

from ..ops.retention import prune as run_prune
from .base import CONTEXT, env_option, moment_or_age


@click.command(context_settings=CONTEXT)
@env_option("--finished-before", "finished_before", env="OMS_PRUNE_FINISHED_BEFORE", required=True,
            metavar="AGE|DATE", help="Instances finished longer ago than this (90d) or before this date (2026-01-31).")
@env_option("--batch", env="OMS_PRUNE_BATCH", type=click.IntRange(min=1, max=50_000), default=5000,
            show_default=True, help="Instances deleted per transaction.")
@env_option("--dry-run", "dry_run", env="OMS_PRUNE_DRY_RUN", is_flag=True,
            help="Count what would be deleted; delete nothing.")
def prune(finished_before: str, batch: int, dry_run: bool) -> None:
    """Delete instances that finished (done, failed or cancelled) long ago, with their tasks, events and notices.

    Runs in batches of short transactions, oldest first, beside running workers: running
    instances are never touched, and an instance another transaction holds is left for
    the next run. Prints what it removed.

    \b
    Examples:
      oms prune --finished-before 90d --dry-run
      oms prune --finished-before 90d
      oms prune --finished-before 2026-01-01 --batch 1000
    """
    report = run_prune(moment_or_age(finished_before, "--finished-before"), batch=batch, dry_run=dry_run)
    before = report.finished_before.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    counts = (f"{report.instances} instance(s), {report.tasks} task(s), {report.events} event(s) and "
              f"{report.notices} notice(s)")
    if dry_run:
        click.echo(f"would remove {counts} finished before {before} (dry run: nothing removed)")
    else:
        click.echo(f"removed {counts} finished before {before}, in {report.batches} batch(es)")
