"""Where notifications land in tests: an incoming-webhook endpoint and an SMTP server, both on
loopback, each keeping what it received."""

from __future__ import annotations

import email
import email.policy
import json
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from embedded.mlflow_server import free_port


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


class WebhookReceiver:
    """Answers POSTs of JSON as Slack's incoming webhooks do (``ok``), keeping each body."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="webhook")
        self.url = f"http://127.0.0.1:{self._server.server_port}/services/T000/B000/hook"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def texts(self) -> list[str]:
        return [body["text"] for body in self.received]

    @Request.application
    def _wsgi(self, request: Request) -> Response:
        if request.method != "POST" or request.mimetype != "application/json":
            return Response("invalid_payload", status=400)
        self.received.append(json.loads(request.get_data()))
        return Response("ok", mimetype="text/plain")


@dataclass
class Mail:
    sender: str
    recipients: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


class MailReceiver:
    """An SMTP server (aiosmtpd) on loopback that keeps every message it accepts."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[Mail] = []
        self.port = free_port()  # aiosmtpd checks its server by connecting to the port it was given
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd's name)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def __enter__(self) -> MailReceiver:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()

