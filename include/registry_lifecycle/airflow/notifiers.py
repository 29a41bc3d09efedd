"""Capacity alerts through Airflow notifiers, built from the policy's `forecast.alerts.notifiers`.

- `email`: the smtp provider's `SmtpNotifier` (installed with Airflow core); the chart is attached.
- `slack`: the slack provider's `SlackWebhookNotifier` when apache-airflow-providers-slack is
  installed, else `SlackIncomingWebhookNotifier` below; both read the same `slackwebhook`
  Connection (the webhook URL, or its token path, in the password).
- `webhook`: `WebhookNotifier` below POSTs the alert as JSON (chart included as base64 PNG)
  to the URL of an `http` Connection, with its password as a bearer token.

Credentials are read from the Connection when a message is sent, never from the policy. The
message is composed by `registry_lifecycle.forecast.alert` and sent with `notify()`, never
rendered as a Jinja template: it is data, not a template. Failures come back as
`DeliveryFailed` whose text names the channel and the HTTP status or error type only, since a
webhook URL (Slack's holds its token) must not reach a task log.
"""
from __future__ import annotations

import functools
import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from airflow.sdk import BaseHook, BaseNotifier

from ..config import AlertSettings, EmailAlerts, SlackAlerts, WebhookAlerts
from ..forecast.alert import CHART_FILENAME, AlertMessage, DeliveryFailed, Sender
from .connections import _base_url, _extra, _verify

SLACK_WEBHOOK_BASE = "https://hooks.slack.com/services"


@contextmanager
def _quiet_httpx() -> Iterator[None]:
    """httpx logs every request with its full URL at INFO: a webhook URL can hold a token."""
    logger = logging.getLogger("httpx")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


class WebhookNotifier(BaseNotifier):
    """POSTs a JSON body to the URL of an `http` Connection.

    URL: host (a full URL, or a host name with `schema` and `port`) plus extra `endpoint`;
    the password, if any, is sent as `Authorization: Bearer`; extra `headers` are added; TLS
    is verified unless extra `verify` is false (extra `ca_bundle` for a private CA).
    """

    template_fields = ()

    def __init__(self, *, connection_id: str, body: dict, name: str = "webhook", timeout: float = 10.0):
        super().__init__()
        self.connection_id = connection_id
        self.body = body
        self.name = name
        self.timeout = timeout

    def _target(self, conn: Any) -> tuple[str, dict[str, str]]:
        extra = _extra(conn)
        endpoint = str(extra.get("endpoint") or "")
        url = f"{_base_url(conn)}/{endpoint.lstrip('/')}" if endpoint else _base_url(conn)
        headers = {str(key): str(value) for key, value in (extra.get("headers") or {}).items()}
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        return url, headers

    def notify(self, context) -> None:
        conn = BaseHook.get_connection(self.connection_id)
        url, headers = self._target(conn)
        try:
            with _quiet_httpx():
                response = httpx.post(url, json=self.body, headers=headers, verify=_verify(_extra(conn)),
                                      timeout=self.timeout)
        except httpx.HTTPError as error:
            raise DeliveryFailed(f"{self.name}: the webhook of Connection {self.connection_id!r} did not answer "
                                 f"({type(error).__name__})") from None
        if response.status_code >= 300:
            raise DeliveryFailed(f"{self.name}: the webhook of Connection {self.connection_id!r} answered "
                                 f"HTTP {response.status_code}")


class SlackIncomingWebhookNotifier(WebhookNotifier):
    """A Slack incoming webhook, for when the slack provider is not installed.

    Reads a `slackwebhook` Connection as the provider does: the password is the whole webhook
    URL, or its token path (`T000/B000/XXXX`) under the host (default hooks.slack.com/services).
    """

    def _target(self, conn: Any) -> tuple[str, dict[str, str]]:
        token = conn.password or ""
        if token.startswith(("https://", "http://")):
            return token, {}
        base = _base_url(conn) if conn.host else SLACK_WEBHOOK_BASE
        return f"{base.rstrip('/')}/{token.lstrip('/')}", {}


def build(settings: EmailAlerts | SlackAlerts | WebhookAlerts, message: AlertMessage, workdir: Path) -> BaseNotifier:
    """The Airflow notifier that carries `message` through one configured channel."""
    if isinstance(settings, EmailAlerts):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        files = None
        if message.chart_png is not None:
            chart = workdir / CHART_FILENAME
            chart.write_bytes(message.chart_png)
            files = [str(chart)]
        return SmtpNotifier(to=list(settings.to), cc=list(settings.cc) or None, from_email=settings.from_email,
                            subject=message.subject, html_content=message.html, files=files,
                            smtp_conn_id=settings.connection_id)
    if isinstance(settings, SlackAlerts):
        payload = message.slack_payload()
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
        except ImportError:
            return SlackIncomingWebhookNotifier(connection_id=settings.connection_id, body=payload,
                                                name=settings.channel)
        return SlackWebhookNotifier(slack_webhook_conn_id=settings.connection_id, text=payload["text"],
                                    blocks=payload["blocks"])
    return WebhookNotifier(connection_id=settings.connection_id, body=message.payload(include_chart=settings.include_chart),
                           name=settings.channel, timeout=settings.timeout_seconds)


def send(settings: EmailAlerts | SlackAlerts | WebhookAlerts, message: AlertMessage, *, context) -> None:
    """Deliver `message` through one channel, or raise DeliveryFailed with a text safe to log."""
    with tempfile.TemporaryDirectory(prefix="reglife-alert-") as workdir:
        notifier = build(settings, message, Path(workdir))
        try:
            notifier.notify(context)
        except DeliveryFailed:
            raise
        except Exception as error:
            # An SMTP server's answer names no secret; a Slack client's error may carry the URL.
            detail = f"{type(error).__name__}: {error}" if isinstance(settings, EmailAlerts) else type(error).__name__
            raise DeliveryFailed(f"{settings.channel}: {detail}") from None


def senders(settings: AlertSettings, context) -> dict[str, Sender]:
    """One sender per configured channel, keyed by its name in the delivery log."""
    return {notifier.channel: functools.partial(send, notifier, context=context) for notifier in settings.notifiers}
