"""What every ``oms`` subcommand shares: options read from ``OMS_*`` variables, and the error policy.

Bad input (an unknown id, invalid JSON, an invalid definition, an unreachable
database) prints one line on stderr and exits with :data:`RET_ERROR`, never a
traceback: the engine's exceptions already say what is wrong and what to do.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, TypeVar

import click
import kombu.exceptions
import pydantic
from sqlalchemy.exc import SQLAlchemyError

from ..durations import MAX_RETENTION, parse_duration
from ..exceptions import OmsError

#: Exit codes: success, an error the engine or the input caused, a usage error (click's).
RET_OK, RET_ERROR, RET_USAGE = 0, 1, 2
#: ``oms`` interrupted with Ctrl-C.
RET_INTERRUPTED = 130

F = TypeVar("F", bound=Callable[..., Any])


def die(message: str) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with :data:`RET_ERROR`."""
    click.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(RET_ERROR)


def env_option(*decls: str, env: str, help: str, **kwargs: Any) -> Callable[[F], F]:
    """A click option also read from the variable ``env``, saying so in its help."""
    return click.option(*decls, envvar=env, help=f"{help} (env: {env})", **kwargs)


def moment_or_age(text: str, option: str) -> timedelta | datetime:
    """An option's value: a duration ago (``90d``) or a moment (``2026-01-01``, UTC unless it says otherwise)."""
    try:
        return parse_duration(text, limit=MAX_RETENTION)
    except ValueError as exc:
        problem = str(exc)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        if "out of range" in problem:
            die(f"{option}: {problem}")
        die(f"{option} {text!r} is neither a duration (90d, 12h) nor a date (2026-01-31)")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


class OmsGroup(click.Group):
    """A click group that turns expected failures into one line and a non-zero exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OmsError as exc:
            die(str(exc))
        except pydantic.ValidationError as exc:
            if exc.title != "OmsSettings":  # only an OMS_* variable the settings refuse is bad input
                raise
            problems = "; ".join(f"OMS_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
            die(f"invalid setting: {problems}")
        except SQLAlchemyError as exc:
            die(f"database error: {_first_line(getattr(exc, 'orig', None) or exc)}")
        except kombu.exceptions.OperationalError as exc:
            die(f"cannot reach the broker: {_first_line(exc)}")
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(RET_INTERRUPTED)


#: ``context_settings`` of every command: ``-h`` as well as ``--help``, wide help text.
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
