"""Real receivers for notices, run by the tests on loopback: a webhook (``http.server`` in a thread) that checks
signatures and can be told to fail, and an SMTP server (``aiosmtpd``) with STARTTLS and AUTH."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def verify(secret: str, body: bytes, header: str) -> bool:
    """The README's check of ``X-OMS-Signature``, as a receiver writes it."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Listening(ThreadingHTTPServer):
    """A webhook with a real server's listen backlog: ``socketserver``'s 5 resets connections when the engine's
    parallel sweeps (8 sends each) arrive at once on a loaded machine."""

    request_queue_size = 128


@dataclass(frozen=True)
class Received:
    """One POST the webhook received, and what it answered."""

    path: str
    #: Its headers, by lower-case name.
    headers: dict[str, str]
    body: bytes
    signed: bool
    status: int

    @property
    def notice_id(self) -> str:
        return self.headers.get("x-oms-notice-id", "")

    def json(self) -> dict[str, Any]:
        return cast(dict[str, Any], json.loads(self.body))


class Webhook:
    """An HTTP receiver on loopback. Each POST is recorded and answered with the next status of :attr:`answers`
    (then 200); one whose signature does not verify with ``secret`` is answered 401."""

    def __init__(self, secret: str | None, answers: list[int] | None = None, path: str = "/hooks/T0/B0/path-secret"):
        self.secret, self.path = secret, path
        self.answers = list(answers or [])
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signed = receiver.secret is not None and verify(receiver.secret, body,
                                                                self.headers.get("X-OMS-Signature", ""))
                with receiver.lock:
                    status = receiver.answers.pop(0) if receiver.answers else 200
                    if receiver.secret is not None and not signed:
                        status = 401
                    receiver.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                      body, signed, status))
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"try later")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = Listening(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, and its key (made by the openssl command)."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@dataclass(frozen=True)
class Mail:
    """One message the SMTP server accepted, with how it came."""

    sender: str
    recipients: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool

    def part(self, subtype: str) -> str:
        found = self.message.get_body(preferencelist=(subtype,))
        assert found is not None and found.get_content_subtype() == subtype, self.message
        return str(cast(EmailMessage, found).get_content())


class MailServer:
    """An SMTP server on loopback that requires STARTTLS and accepts AUTH as ``user``/``password``; it can be
    stopped and started again on the same port. The client must trust :attr:`cert` (``SSL_CERT_FILE``)."""

    def __init__(self, folder: Path, user: str = "oms", password: str = "mail-pass-123") -> None:
        self.cert, key = self_signed(folder)
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(self.cert, key)
        self.user, self.password = user, password
        self.port = free_port()
        self.mails: list[Mail] = []
        self.controller: Controller | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"smtp://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (self.user.encode(),
                                                                                self.password.encode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = cast(EmailMessage, message_from_bytes(envelope.content, policy=policy.default))
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, session.ssl is not None,
                               bool(session.authenticated)))
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, tls_context=self.context,
                                     require_starttls=True, authenticator=self._authenticate, auth_required=True)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
