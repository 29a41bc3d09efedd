"""Capacity alerts: a message people can act on, sent once per situation, through channels
configured in the policy without a secret in it."""
from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from datetime import date, timedelta

import pandas as pd
import pytest
import yaml
from registry_lifecycle.config import DEFAULT_POLICY, Policy, PolicyError, load_policy, policy_with
from registry_lifecycle.forecast import alert, scenarios
from registry_lifecycle.forecast.alert import AlertDeliveryError, Candidate, DeliveryFailed
from registry_lifecycle.forecast.capacity import AlertFingerprint
from registry_lifecycle.forecast.contracts import ALERT_DELIVERIES, CAPACITY_ALERTS
from registry_lifecycle.forecast.run import ForecastRun, NamespaceForecasts, forecast_volume, publish
from registry_lifecycle.forecast.series import daily_storage
from registry_lifecycle.lake import Lake, LakeNotFound

from .conftest import FAST_CANDIDATES

GIB = 2**30
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SERIES = f"volume:{scenarios.VOLUME}"


def _volume(scenario: scenarios.FillScenario, day: str):
    return forecast_volume(daily_storage(scenario.samples, until=pd.Timestamp(day)), candidates=FAST_CANDIDATES)


@pytest.fixture(scope="module")
def filling():
    """A linear fill forecast 14 days before the volume is full: certainly at risk."""
    scenario = scenarios.linear_fill()
    as_of = scenario.fills_at.tz_convert(None).normalize() - pd.Timedelta(days=14)
    volume = _volume(scenario, str(as_of.date()))
    assert volume.outlook.at_risk, volume.outlook.summary
    return volume


@pytest.fixture(scope="module")
def stable():
    volume = _volume(scenarios.stable_sawtooth(), "2026-03-16")
    assert not volume.outlook.at_risk, volume.outlook.summary
    return volume


DRIVERS = pd.DataFrame({"namespace": ["team-a-dev", "ci-cache", "team-b", "quiet"],
                        "added_bytes": [12 * GIB, 5 * GIB, 1 * GIB, 0.0],
                        "share": [12 / 18, 5 / 18, 1 / 18, 0.0]})


# ------------------------------------------------------------------------------ the message
def test_an_alert_says_how_likely_how_soon_who_drives_it_and_shows_the_chart(filling):
    message = alert.compose(filling, DRIVERS, top=2)
    days = filling.outlook.days_to_full
    assert message.severity == filling.outlook.fingerprint.severity
    assert message.subject.startswith(f"[{message.severity}] registry storage {scenarios.VOLUME}")
    assert f"about {days.median} days, 80%: {days.lo80}-" in message.subject
    assert f"full in about {days.median} days (80% interval: {days.lo80} days" in message.text
    assert "team-a-dev" in message.text and "ci-cache" in message.text and "team-b" not in message.text
    assert "team-a-dev" in message.html and "<table>" in message.html
    assert message.chart_png.startswith(PNG_MAGIC)
    body = json.loads(json.dumps(message.payload()))
    assert base64.b64decode(body["chart_png_base64"]).startswith(PNG_MAGIC)
    assert [entry["namespace"] for entry in body["top_namespaces"]] == ["team-a-dev", "ci-cache"]
    assert body["days_to_full"] == {"median": days.median, "lo80": days.lo80, "hi80": days.hi80}
    assert body["p_full_within_lead"] > body["alert_probability"]
    assert "chart_png_base64" not in message.payload(include_chart=False)
    assert message.slack_payload()["text"] == message.subject


def test_a_volume_not_at_risk_gets_no_alert_text_and_no_chart(stable):
    message = alert.compose(stable, DRIVERS)
    assert message.severity is None and message.chart_png is None
    assert message.subject.startswith("no alert: ")
    assert Candidate.of(stable, DRIVERS, top=5, day=date(2026, 3, 16)).at_risk is False


def test_the_candidates_of_a_run_are_published_with_its_forecasts(filling, stable, tmp_path):
    lake = Lake(tmp_path / "lake")
    day = filling.outlook.as_of
    other = replace(stable, series="volume:other/pvc")
    run = ForecastRun(day, (filling, other), NamespaceForecasts(pd.DataFrame(), pd.DataFrame(), DRIVERS))
    publish(lake, run, "forecast__alerts", top_namespaces=3)
    stored = lake.read(CAPACITY_ALERTS, day)
    assert stored["series"].tolist() == [SERIES, "volume:other/pvc"]
    assert stored["at_risk"].tolist() == [True, False]
    read = alert.read_candidates(lake, day, "forecast__alerts")
    assert read[0].fingerprint == filling.outlook.fingerprint
    assert read[0].message.chart_png.startswith(PNG_MAGIC)
    assert [entry["namespace"] for entry in read[0].message.details["top_namespaces"]] == \
        ["team-a-dev", "ci-cache", "team-b"]
    assert read[1].fingerprint is None and read[1].message.chart_png is None


# ------------------------------------------------------------------------------ the decision
def _candidate(band: int = 3, full_by: date = date(2026, 7, 1), capacity: float = 100 * GIB,
               as_of: date = date(2026, 6, 1), series: str = SERIES) -> Candidate:
    fingerprint = AlertFingerprint(series, capacity, band, full_by)
    message = alert.AlertMessage(series, fingerprint.severity, f"[{fingerprint.severity}] {series}", "text",
                                 "<p>text</p>", {"series": series}, PNG_MAGIC)
    return Candidate(series, as_of, True, 0.9, fingerprint, message)


def _all_clear(as_of: date, series: str = SERIES) -> Candidate:
    message = alert.AlertMessage(series, None, f"no alert: {series}: P(full) 1%", "text", "<p>text</p>", {}, None)
    return Candidate(series, as_of, False, 0.01, None, message)


class Outbox:
    """Senders that record what each channel was told; `failing` channels raise instead."""

    def __init__(self, *channels: str, failing: tuple[str, ...] = ()):
        self.channels, self.failing = channels, set(failing)
        self.sent: list[tuple[str, str]] = []

    def senders(self) -> dict:
        def sender(channel):
            def send(message):
                if channel in self.failing:
                    raise DeliveryFailed(f"{channel}: the webhook answered HTTP 503")
                self.sent.append((channel, message.subject))
            return send
        return {channel: sender(channel) for channel in self.channels}


def _deliver(lake: Lake, candidate: Candidate, outbox: Outbox):
    [decision] = alert.deliver(lake, candidate.as_of, f"run__{candidate.as_of}", [candidate], outbox.senders())
    return decision


def test_the_first_alert_goes_to_every_channel_and_the_same_situation_is_not_repeated(tmp_path):
    lake, outbox = Lake(tmp_path / "lake"), Outbox("email", "webhook")
    first = _deliver(lake, _candidate(), outbox)
    assert first.due and first.notify == ("email", "webhook")
    assert [channel for channel, _ in outbox.sent] == ["email", "webhook"]
    # The next days: the date drifts by less than a week, the severity stays.
    for offset, full_by in ((1, date(2026, 7, 2)), (2, date(2026, 6, 27))):
        again = _deliver(lake, _candidate(full_by=full_by, as_of=date(2026, 6, 1) + timedelta(days=offset)), outbox)
        assert not again.due and again.already_told == ("email", "webhook")
        assert "unchanged since the alert of 2026-06-01" in again.reason
    assert len(outbox.sent) == 2
    log = lake.read_range(ALERT_DELIVERIES, date(2026, 6, 1), date(2026, 6, 3))
    assert log["event"].tolist() == ["sent", "sent"] and set(log["channel"]) == {"email", "webhook"}


@pytest.mark.parametrize("change, why", [
    ({"band": 3}, "the risk rose from warning to critical"),
    ({"full_by": date(2026, 6, 20)}, "11 days closer"),
    ({"capacity": 160 * GIB}, "the capacity changed (100.0 -> 160.0 GiB)"),
])
def test_a_different_situation_is_news(tmp_path, change, why):
    lake, outbox = Lake(tmp_path / "lake"), Outbox("email")
    _deliver(lake, _candidate(band=1), outbox)
    changed = _candidate(**{"band": 1, **change, "as_of": date(2026, 6, 2)})
    decision = _deliver(lake, changed, outbox)
    assert decision.due and why in decision.reason
    assert len(outbox.sent) == 2


def test_when_the_risk_goes_away_the_next_risk_alerts_again(tmp_path):
    lake, outbox = Lake(tmp_path / "lake"), Outbox("email")
    _deliver(lake, _candidate(), outbox)
    cleared = _deliver(lake, _all_clear(date(2026, 6, 2)), outbox)
    assert cleared.clear and not cleared.due and "went away" in cleared.reason
    quiet = _deliver(lake, _all_clear(date(2026, 6, 3)), outbox)
    assert not quiet.clear, "a clearance is logged once, not every quiet day"
    back = _deliver(lake, _candidate(as_of=date(2026, 6, 10)), outbox)
    assert back.due and len(outbox.sent) == 2
    events = lake.read_range(ALERT_DELIVERIES, date(2026, 6, 1), date(2026, 6, 10))["event"].tolist()
    assert events == ["sent", "cleared", "sent"]


def test_a_failed_channel_does_not_silence_the_others_and_a_retry_tells_only_it(tmp_path):
    lake = Lake(tmp_path / "lake")
    broken = Outbox("email", "webhook", failing=("webhook",))
    with pytest.raises(AlertDeliveryError, match="webhook for volume:.*HTTP 503"):
        _deliver(lake, _candidate(), broken)
    assert [channel for channel, _ in broken.sent] == ["email"]
    retry = Outbox("email", "webhook")
    decision = _deliver(lake, _candidate(), retry)
    assert decision.notify == ("webhook",) and decision.already_told == ("email",)
    assert [channel for channel, _ in retry.sent] == ["webhook"]


def test_a_channel_added_to_the_policy_learns_of_a_known_risk(tmp_path):
    lake = Lake(tmp_path / "lake")
    _deliver(lake, _candidate(), Outbox("email"))
    outbox = Outbox("email", "slack")
    decision = _deliver(lake, _candidate(as_of=date(2026, 6, 2)), outbox)
    assert decision.notify == ("slack",) and [channel for channel, _ in outbox.sent] == ["slack"]


def test_without_notifiers_the_decision_is_shown_and_nothing_is_recorded(tmp_path):
    lake = Lake(tmp_path / "lake")
    [decision] = alert.decisions(lake, date(2026, 6, 1), [_candidate()], [])
    assert decision.due and decision.notify == () and "no notifiers are configured" in decision.reason
    _deliver(lake, _candidate(), Outbox())
    with pytest.raises(LakeNotFound):
        lake.read_range(ALERT_DELIVERIES, date(2026, 6, 1), date(2026, 6, 1))


def test_a_resized_pvc_clears_the_alert_and_the_date_creeping_by_days_does_not_repeat_it(tmp_path):
    """Resize scenario: 80 GiB fills in March, the PVC becomes 160 GiB on 2026-03-16."""
    scenario, lake, outbox = scenarios.resize(), Lake(tmp_path / "lake"), Outbox("email")
    decisions = {}
    for day in ("2026-03-10", "2026-03-14", "2026-03-20"):
        volume = _volume(scenario, day)
        candidate = Candidate.of(volume, None, top=5, day=date.fromisoformat(day))
        decisions[day] = _deliver(lake, candidate, outbox)
    assert decisions["2026-03-10"].due and decisions["2026-03-10"].severity == "critical"
    assert not decisions["2026-03-14"].due, decisions["2026-03-14"].reason
    assert decisions["2026-03-20"].clear and not decisions["2026-03-20"].at_risk
    assert len(outbox.sent) == 1


# ------------------------------------------------------------------------------ the policy
def _documented_notifiers() -> list[dict]:
    """The commented notifier example of default.yaml, uncommented."""
    text = DEFAULT_POLICY.read_text()
    block = text.split("    # notifiers:\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if not line.startswith("    #   "):
            break
        lines.append(line.replace("    #", "", 1))
    return yaml.safe_load("notifiers:\n" + "\n".join(lines))["notifiers"]


def test_the_documented_notifier_example_is_a_valid_policy():
    documented = _documented_notifiers()
    assert [entry["kind"] for entry in documented] == ["email", "slack", "webhook"]
    policy = policy_with(load_policy(), {"forecast": {"alerts": {"notifiers": documented}}})
    assert [n.channel for n in policy.forecast.alerts.notifiers] == ["email", "registry-slack", "webhook"]
    assert load_policy().forecast.alerts.notifiers == [], "the default sends nothing"


def test_a_secret_in_the_policy_is_refused_without_being_echoed():
    secret = "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX"
    with pytest.raises(PolicyError) as refused:
        policy_with(Policy(), {"forecast": {"alerts": {"notifiers": [{"kind": "slack", "webhook_url": secret}]}}})
    assert "forecast.alerts.notifiers[0].slack.webhook_url: secrets and URLs do not belong in the policy" \
        in str(refused.value)
    assert "Connection" in str(refused.value) and "XXXXsecretXXXX" not in str(refused.value)
    with pytest.raises(PolicyError) as wrong_kind:
        policy_with(Policy(), {"forecast": {"alerts": {"notifiers": [{"kind": "pager", "token": "s3cr3t-token"}]}}})
    assert "s3cr3t-token" not in str(wrong_kind.value)


@pytest.mark.parametrize("notifiers, field", [
    ([{"kind": "email", "to": ["platform"]}], "forecast.alerts.notifiers[0].email.to: not an email address"),
    ([{"kind": "email", "to": []}], "forecast.alerts.notifiers[0].email.to"),
    ([{"kind": "webhook"}], "forecast.alerts.notifiers[0].webhook.connection_id: required setting is missing"),
    ([{"kind": "sms"}], "forecast.alerts.notifiers[0]: Input tag 'sms'"),
    ([{"kind": "slack"}, {"kind": "slack"}], "forecast.alerts.notifiers: two notifiers are called 'slack'"),
    ([{"kind": "slack", "name": "Ops Slack"}], "forecast.alerts.notifiers[0].slack.name"),
])
def test_a_wrong_notifier_names_its_field(notifiers, field):
    with pytest.raises(PolicyError, match=re.escape(field)):
        policy_with(Policy(), {"forecast": {"alerts": {"notifiers": notifiers}}})


# ------------------------------------------------------------------------------ reglife forecast
def test_reglife_forecast_json_carries_the_alert_decision_and_sends_nothing(tmp_path, capsys):
    from registry_lifecycle.cli import main

    scenario = scenarios.linear_fill()
    last = (scenario.fills_at.tz_convert(None).normalize() - pd.Timedelta(days=14)).date()
    lake = Lake(tmp_path / "lake")
    days = pd.DatetimeIndex(scenario.samples["ts"]).date
    for offset in range(70):
        day = last - timedelta(days=offset)
        with lake.run(day, f"extract__{day}") as run:
            run.write("storage_usage", scenario.samples[days == day])

    assert main(["forecast", "--lake", str(tmp_path / "lake"), "--date", last.isoformat(), "--json"]) == 0
    [volume] = json.loads(capsys.readouterr().out)["volumes"]
    decision = volume["alert"]
    assert decision["at_risk"] and decision["fires"] and decision["severity"] in ("high", "critical")
    assert decision["notify"] == [] and "no notifiers are configured" in decision["reason"]
    with pytest.raises(LakeNotFound):
        lake.read(ALERT_DELIVERIES, last)

    assert main(["forecast", "--lake", str(tmp_path / "lake"), "--date", last.isoformat()]) == 0
    assert f"alert: FIRES ({decision['severity']})" in capsys.readouterr().out
