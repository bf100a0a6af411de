"""Telling people: what happened to a model version, with the links an on-call engineer opens.

Events: a pull request opened (``pr_opened``), a version promoted (``promoted``), rejected by the
evaluation gate (``rejected``), a pull request closed without merge (``pr_closed``), a rollout that
failed after the merge (``rollout_failed``). The spec's ``notifications`` section says which events go
where: an incoming webhook (Slack's, or any that takes ``{"text": ...}``) and email.

Delivery is Airflow's notifiers (``BaseNotifier``): ``WebhookNotifier`` here, the SMTP provider's
``SmtpNotifier`` for email. A notification that cannot be delivered is logged, never fails the task.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

from model_lifecycle.links import AIRFLOW_RUN, run_url

if TYPE_CHECKING:
    from airflow.sdk import Context

    from model_lifecycle.specs import ModelSpec, Notifications

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Message:
    event: str
    title: str
    text: str
    links: Mapping[str, str]

    def plain(self) -> str:
        links = "\n".join(f"{name}: {url}" for name, url in self.links.items() if url)
        return f"{self.title}\n{self.text}\n{links}".rstrip()

    def html(self) -> str:
        links = "".join(f'<li>{html.escape(name)}: <a href="{html.escape(url)}">{html.escape(url)}</a></li>'
                        for name, url in self.links.items() if url)
        return f"<p>{html.escape(self.text)}</p><ul>{links}</ul>"


class WebhookNotifier(BaseNotifier):
    """Posts ``{"text": ...}`` to the URL of an HTTP connection (a Slack incoming webhook, say). The text
    is the message itself, not a template."""

    template_fields = ()

    def __init__(self, *, connection_id: str, text: str) -> None:
        super().__init__()
        self.connection_id = connection_id
        self.text = text

    def notify(self, context: Context) -> None:
        from model_lifecycle.hooks.webhook import WebhookHook

        WebhookHook(self.connection_id).post_text(self.text)


def send(settings: Notifications, message: Message, context: Context) -> list[str]:
    """Deliver ``message`` where the spec says; returns the channels it reached."""
    if message.event not in settings.events:
        return []
    notifiers: dict[str, Any] = {}
    if settings.webhook is not None:
        notifiers["webhook"] = WebhookNotifier(connection_id=settings.webhook.connection_id,
                                               text=message.plain())
    if settings.email is not None:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers["email"] = SmtpNotifier(to=settings.email.to, subject=message.title,
                                          html_content=message.html(),
                                          smtp_conn_id=settings.email.connection_id)
    reached = []
    for channel, notifier in notifiers.items():
        try:
            notifier.notify(context)
        except Exception as error:  # noqa: BLE001 (a lost notification must not fail the lifecycle)
            log.warning("Could not send the %s notification by %s: %s", message.event, channel, error)
        else:
            reached.append(channel)
    return reached


def notify(context: Context, spec: ModelSpec, event: str, text: str, *, version: str,
           links: Mapping[str, str]) -> None:
    """Tell whoever the spec names about ``event`` on ``version`` of the model, with ``links`` (the
    version's, ``links.version_links``, and any other) and this Airflow run's."""
    isvc = spec.gitops.inference_service
    message = Message(
        event=event,
        title=f"[{event}] {spec.registered_model} v{version} for {isvc.namespace}/{isvc.name}",
        text=text,
        links={**links, AIRFLOW_RUN: run_url(context)},
    )
    reached = send(spec.notifications, message, context)
    if reached:
        log.info("Notified %s of %s.", " and ".join(reached), event)
