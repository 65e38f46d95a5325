"""The ``oms`` command: define and start workflows, watch them, run workers, try the demo.

One module per group of subcommands; this one holds the root group and the
settings every subcommand shares. Every option can also be set by its ``OMS_*``
variable, named in ``--help``.
"""

from __future__ import annotations

import os

import click

from ..attach import APP_VARIABLE, load
from ..celery.config import configure
from .api import api, token
from .base import CONTEXT, OmsGroup, env_option
from .calendars import calendar
from .channels import channel, notices
from .database import db
from .doctor import doctor
from .instances import cancel, history, list_, retry, start, status
from .processes import beat, demo, worker
from .report import report
from .retention import prune
from .users import user
from .workflows import workflow

#: Options of the root group, by the setting they override.
_SETTINGS = {"database_url": "OMS_DATABASE_URL", "broker_url": "OMS_BROKER_URL", "home": "OMS_HOME"}


@click.group(cls=OmsGroup, context_settings=CONTEXT)
@env_option("--database-url", env="OMS_DATABASE_URL", metavar="URL",
            help="State database, a SQLAlchemy URL; default sqlite:///oms.db.")
@env_option("--broker-url", env="OMS_BROKER_URL", metavar="URL",
            help="Celery broker: redis://…, amqp://… or the default filesystem://.")
@env_option("--home", env="OMS_HOME", metavar="DIR", help="Folder for embedded data; default .oms.")
@env_option("-A", "--app", env=APP_VARIABLE, metavar="APP",
            help="Your project's Celery app, which calls oms.attach(app), as for celery -A (proj, proj.celery:app); "
                 "default: the engine's own.")
@click.version_option(package_name="hms-oms", prog_name="oms")
def main(database_url: str | None, broker_url: str | None, home: str | None, app: str | None) -> None:
    """HMS-OMS: workflows of steps with SLAs, run by Celery workers, every transition logged.

    With no settings, everything lives in the working directory: SQLite (oms.db)
    and a filesystem broker (.oms/), no servers needed.

    \b
    Examples:
      oms demo                                       # the EPA registration lab, end to end
      oms workflow register examples/workflows/epa_waste_registration.py
      oms worker -I my_handlers                      # in a second terminal
      oms start epa_waste_reg --payload '{"form_id": "F8700-12-42"}'
      oms status wf-…    oms history wf-…    oms list --light red
      oms db upgrade                                 # first, against a PostgreSQL database
      oms --app proj status wf-…                     # a project whose proj/celery.py calls oms.attach(app)
      oms channel create director-mail --email director@agency.gov;  oms notices --failed
    """
    if app:
        load(app)  # its configuration's engine settings first: the options below win over them
    given = {"database_url": database_url, "broker_url": broker_url, "home": home}
    changed = {k: v for k, v in given.items() if v is not None and os.environ.get(_SETTINGS[k]) != v}
    if changed:
        for key, value in changed.items():
            os.environ[_SETTINGS[key]] = value  # inherited by the processes oms worker/beat/demo start
        configure()


for _command in (workflow, calendar, start, status, history, list_, cancel, retry, report, prune, worker, beat, demo,
                 db, doctor, api, token, user, channel, notices):
    main.add_command(_command)

__all__ = ["main"]
