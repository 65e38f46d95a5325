"""E-mail notices: one message per notice (plain text and HTML), sent through ``OMS_SMTP_URL``.

``smtp://user:password@host:587`` says STARTTLS, and a server that does not offer it
is refused; ``smtps://…:465`` is TLS from the first byte; ``smtp+plain://`` sends in
clear and is accepted for a relay on this machine only (a loopback host). The
server's certificate is checked against the system's CAs (or ``SSL_CERT_FILE``). The
message's ``Message-ID`` is ``<notice id@domain of OMS_SMTP_FROM>``, the same on
every attempt: what a mail system or a person deduplicates on. The URL's password
appears in no error and no log line.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from ..settings import get_settings, is_loopback
from . import message
from .errors import SendFailed

#: Each scheme of ``OMS_SMTP_URL``, its default port.
PORTS = {"smtp": 587, "smtps": 465, "smtp+plain": 25}


@dataclass(frozen=True)
class Server:
    """The SMTP server of ``OMS_SMTP_URL``; the password stays out of its ``repr``."""

    scheme: str
    host: str
    port: int
    user: str | None
    password: str | None = field(repr=False)


def server(url: str | None) -> Server:
    """``OMS_SMTP_URL`` read, or :class:`SendFailed` (retried: an operator may set it) saying what is wrong."""
    if not url:
        raise SendFailed("OMS_SMTP_URL is not set: e-mail notices wait until it is")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise SendFailed("OMS_SMTP_URL cannot be parsed") from None
    if parts.scheme not in PORTS or not parts.hostname:
        raise SendFailed("OMS_SMTP_URL must be smtp://host:587 (STARTTLS), smtps://host:465 or smtp+plain://localhost")
    if parts.scheme == "smtp+plain" and not is_loopback(parts.hostname):
        raise SendFailed(f"smtp+plain:// (no TLS) is accepted for a loopback host only, not {parts.hostname!r}")
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return Server(parts.scheme, parts.hostname, port or PORTS[parts.scheme], user, password)


def compose(told: dict[str, Any], addresses: tuple[str, ...], at: datetime) -> EmailMessage:
    """The notice as an e-mail to ``addresses``: the facts in plain text and in HTML."""
    sender = get_settings().smtp_from
    if not sender or "@" not in sender:
        raise SendFailed("OMS_SMTP_FROM (the notices' From: address) is not set: e-mail notices wait until it is")
    mail = EmailMessage()
    mail["Subject"] = message.subject(told)
    mail["From"] = sender
    mail["To"] = ", ".join(addresses)
    mail["Date"] = format_datetime(at)
    mail["Message-ID"] = f"<{told['notice_id']}@{sender.rsplit('@', 1)[1].strip('> ')}>"
    mail["X-OMS-Notice-Id"] = told["notice_id"]
    mail.set_content(message.text(told))
    mail.add_alternative(message.html(told), subtype="html")
    return mail


def _connect(found: Server, timeout: float) -> smtplib.SMTP:
    context = ssl.create_default_context()
    if found.scheme == "smtps":
        return smtplib.SMTP_SSL(found.host, found.port, timeout=timeout, context=context)
    smtp = smtplib.SMTP(found.host, found.port, timeout=timeout)
    try:
        smtp.ehlo()
        if found.scheme == "smtp":
            if not smtp.has_extn("starttls"):
                raise SendFailed(f"the SMTP server {found.host}:{found.port} does not offer STARTTLS (smtp:// needs "
                                 "it; smtps:// is TLS from the start)")
            smtp.starttls(context=context)
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def send(told: dict[str, Any], addresses: tuple[str, ...], at: datetime, timeout: float) -> str:
    """E-mail the notice ``told`` (:func:`oms.notify.message.facts`) to ``addresses`` through ``OMS_SMTP_URL``;
    return what the server said, or raise :class:`SendFailed`."""
    found = server(get_settings().smtp_url)
    mail = compose(told, addresses, at)
    where = f"{found.host}:{found.port}"
    try:
        with _connect(found, timeout) as smtp:
            if found.user:
                smtp.login(found.user, found.password or "")
            refused = smtp.send_message(mail, to_addrs=list(addresses))
    except smtplib.SMTPRecipientsRefused as exc:
        answers = {a: (code, text) for a, (code, text) in exc.recipients.items()}
        raise SendFailed(f"{where} refused every recipient: {_refusals(answers)}",
                         permanent=all(code >= 500 for code, _ in answers.values())) from None
    except smtplib.SMTPDataError as exc:
        raise SendFailed(f"{where} refused the message: {exc.smtp_code} {_said(exc.smtp_error)}",
                         permanent=exc.smtp_code >= 500) from None
    except smtplib.SMTPResponseException as exc:
        raise SendFailed(f"{where} answered {exc.smtp_code} {_said(exc.smtp_error)}") from None
    except ssl.SSLError as exc:
        raise SendFailed(f"TLS with {where} failed: {exc.reason or exc}") from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"cannot send through {where}: {_said(exc) or type(exc).__name__}") from None
    accepted = len(addresses) - len(refused)
    return f"{where} accepted it for {accepted} recipient(s)" + (f"; refused {_refusals(refused)}" if refused else "")


def _said(value: object) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())


def _refusals(answers: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(f"{address} ({code} {_said(text)})" for address, (code, text) in answers.items())
