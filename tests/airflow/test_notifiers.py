"""The Airflow notifiers built from the policy deliver a capacity alert over real sockets,
with credentials from Connections only, and fail with messages that leak no secret."""
from __future__ import annotations

import base64
import importlib.util
import json
import logging

import pytest
from registry_lifecycle.airflow import notifiers
from registry_lifecycle.config import EmailAlerts, SlackAlerts, WebhookAlerts
from registry_lifecycle.forecast.alert import AlertMessage, DeliveryFailed

from tests.fixtures.receivers import HttpReceiver, SmtpReceiver

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 100
TOKEN = "bearer-token-for-tests-only"
SLACK_TOKEN = "T000/B000/slack-secret-path"


@pytest.fixture
def message() -> AlertMessage:
    return AlertMessage("volume:openshift-image-registry/image-registry-storage", "critical",
                        "[critical] registry storage openshift-image-registry/image-registry-storage: 97% likely full",
                        "Registry storage ... 97% likely full within 30 days.\n  team-a-dev  12.00 GiB  (67%)",
                        "<p><b>[critical] registry storage</b></p><p>{{ not a template }}</p>",
                        {"kind": "registry_capacity_alert", "severity": "critical",
                         "top_namespaces": [{"namespace": "team-a-dev", "added_bytes": 12.0 * 2**30, "share": 0.67}]},
                        PNG)


@pytest.fixture
def receiver():
    server = HttpReceiver().start()
    yield server
    server.stop()


def _connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fields))


def test_the_webhook_gets_the_alert_json_with_the_chart_and_the_connections_token(monkeypatch, receiver, message):
    _connection(monkeypatch, "capacity_hook", conn_type="http", host="127.0.0.1", port=receiver.port,
                schema="http", password=TOKEN, extra={"endpoint": "/hooks/capacity", "headers": {"X-Team": "platform"}})
    notifiers.send(WebhookAlerts(kind="webhook", connection_id="capacity_hook"), message, context={})
    [request] = receiver.requests
    assert request.path == "/hooks/capacity"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}" and request.headers["X-Team"] == "platform"
    body = request.json()
    assert body["subject"] == message.subject and body["severity"] == "critical"
    assert body["top_namespaces"][0]["namespace"] == "team-a-dev"
    assert base64.b64decode(body["chart_png_base64"]) == PNG


def test_a_failing_webhook_says_so_without_its_url_or_token(monkeypatch, receiver, message, caplog):
    receiver.status = 503
    _connection(monkeypatch, "capacity_hook", conn_type="http", host=f"http://127.0.0.1:{receiver.port}/secret-path",
                password=TOKEN)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DeliveryFailed) as failed:
        notifiers.send(WebhookAlerts(kind="webhook", name="pager", connection_id="capacity_hook"), message, context={})
    assert str(failed.value) == "pager: the webhook of Connection 'capacity_hook' answered HTTP 503"
    assert "secret-path" not in caplog.text and TOKEN not in caplog.text


def test_slack_without_the_provider_posts_to_the_incoming_webhook_of_the_connection(monkeypatch, receiver, message,
                                                                                     caplog):
    if importlib.util.find_spec("airflow.providers.slack") is not None:
        pytest.skip("the slack provider is installed: its SlackWebhookNotifier is used instead")
    _connection(monkeypatch, "slack_default", conn_type="slackwebhook", host=f"http://127.0.0.1:{receiver.port}",
                password=SLACK_TOKEN)
    caplog.set_level(logging.DEBUG)
    notifiers.send(SlackAlerts(kind="slack"), message, context={})
    [request] = receiver.requests
    assert request.path == f"/{SLACK_TOKEN}"
    assert "Authorization" not in request.headers
    assert request.json()["text"] == message.subject
    assert "team-a-dev" in json.dumps(request.json()["blocks"])
    assert "slack-secret-path" not in caplog.text


def test_email_goes_through_the_smtp_provider_with_the_chart_attached(monkeypatch, message):
    server = SmtpReceiver().start()
    try:
        _connection(monkeypatch, "smtp_default", conn_type="smtp", host="127.0.0.1", port=server.port,
                    extra={"disable_tls": True, "disable_ssl": True, "from_email": "reglife@example.com",
                           "retry_limit": 0, "timeout": 10})
        notifiers.send(EmailAlerts(kind="email", to=["platform@example.com"], cc=["ops@example.com"]), message,
                       context={})
    finally:
        server.stop()
    [mail] = server.messages
    assert mail["Subject"] == message.subject and mail["From"] == "reglife@example.com"
    assert set(mail["X-Envelope-To"].split(", ")) == {"platform@example.com", "ops@example.com"}
    parts = {part.get_content_type(): part for part in mail.walk()}
    assert "{{ not a template }}" in parts["text/html"].get_payload(decode=True).decode(), \
        "the message is data: never rendered as a Jinja template"
    attachment = next(part for part in mail.walk() if part.get_filename() == "capacity-forecast.png")
    assert attachment.get_payload(decode=True) == PNG


def test_senders_are_keyed_by_channel_name():
    from registry_lifecycle.config import AlertSettings

    settings = AlertSettings(notifiers=[{"kind": "email", "to": ["a@example.com"]},
                                        {"kind": "webhook", "name": "pager", "connection_id": "hook"}])
    assert list(notifiers.senders(settings, context={})) == ["email", "pager"]
