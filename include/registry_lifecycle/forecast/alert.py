"""Capacity alerts: whether to tell people that the registry may fill, what to tell them, and
not to tell them the same thing twice.

A forecast run leaves one alert *candidate* per volume in `capacity_alerts`: the situation
(P(full within the lead time), severity, the fingerprint of `capacity.AlertFingerprint`) and
the whole message an alert would carry (subject, text, HTML, JSON details, the chart), so what
people were told sits in the lake beside what the forecast knew. Sending is a separate step
(the DAG's `alert` task, through Airflow notifiers) that a retry repeats without refitting a
model; this module decides and records, and never imports Airflow: a notifier is handed in as
a plain `Sender` per channel.

No repeat for an unchanged situation. Each alert sent appends one row per channel to the
append-only `alert_deliveries` log, with the fingerprint it carried. A channel is told again
only when `capacity.what_changed` finds the situation new against the last alert it got: the
capacity changed, the severity rose, or the projected date came a week closer. When the risk
goes away a clearance is logged, which re-arms every channel for the next time. The state is
kept per channel so that a retry after one notifier failed sends to that one only, and a
channel added to the policy learns of a risk that is already known.
"""
from __future__ import annotations

import base64
import html
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ..lake import Lake, LakeNotFound
from .capacity import AlertFingerprint, DaysToFull, what_changed
from .contracts import ALERT_DELIVERIES, CAPACITY_ALERTS

if TYPE_CHECKING:
    from .run import ForecastRun, VolumeForecast

log = logging.getLogger(__name__)

GIB = 2**30
#: The pseudo-channel of a decision taken without notifiers (`reglife forecast`, a policy with
#: none configured): compared with the last alert sent on any channel. Also the channel of a
#: clearance, which re-arms them all.
ANY_CHANNEL = "*"
SENT, CLEARED = "sent", "cleared"
#: How far back the delivery log is read: a risk that lasted longer than this alerts again.
LOOKBACK_DAYS = 365
CHART_FILENAME = "capacity-forecast.png"
REMEDIES = ("prune images nobody runs or pulls (the registry_gc DAG), resize the registry PVC, "
            "or move the registry to object storage")

#: A notifier as this module sees it: takes the message, raises if it was not delivered.
Sender = Callable[["AlertMessage"], None]


class DeliveryFailed(RuntimeError):
    """A notifier could not deliver; its text is safe to log (no URL, token or password)."""


class AlertDeliveryError(RuntimeError):
    """Some channels were not told; those that were are logged and are not told again on a retry."""


# ------------------------------------------------------------------------------ the message
@dataclass(frozen=True)
class AlertMessage:
    """What an alert says, in every form a notifier needs."""

    series: str
    severity: str | None
    subject: str
    text: str
    html: str
    details: dict               # JSON-ready facts: what a webhook receives
    chart_png: bytes | None

    def payload(self, *, include_chart: bool = True) -> dict:
        """The JSON body of a webhook: subject, text and the facts, with the chart as base64 PNG."""
        body = {"subject": self.subject, "text": self.text, **self.details}
        if include_chart and self.chart_png is not None:
            body["chart_png_base64"] = base64.b64encode(self.chart_png).decode("ascii")
        return body

    def slack_payload(self) -> dict:
        """A Slack incoming-webhook body (a webhook cannot carry a file: the chart is in the email,
        the webhook JSON and the lake's capacity_alerts)."""
        return {"text": self.subject,
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{self.subject}*"}},
                           {"type": "section", "text": {"type": "mrkdwn", "text": f"```{self.text}```"}}]}


def _days_text(days: DaysToFull) -> str:
    if days.median is not None:
        high = f"{days.hi80} days" if days.hi80 is not None else "beyond the horizon"
        return f"full in about {days.median} days (80% interval: {days.lo80} days to {high})"
    if days.lo80 is not None:
        return f"fewer than half of the simulated futures fill within the horizon (10% fill within {days.lo80} days)"
    return "not full within the horizon"


def _drivers(drivers: pd.DataFrame | None, top: int) -> list[dict]:
    if drivers is None or top <= 0 or drivers.empty:
        return []
    head = drivers[drivers["added_bytes"] > 0].head(top)
    return [{"namespace": str(row.namespace), "added_bytes": float(row.added_bytes), "share": float(row.share)}
            for row in head.itertuples()]


def compose(volume: VolumeForecast, drivers: pd.DataFrame | None = None, *, top: int = 5,
            day: date | None = None) -> AlertMessage:
    """The message for one volume: the risk, days to full with its interval, who drives the
    growth, what helps, and the chart (only when at risk: nobody reads a chart of no news)."""
    outlook = volume.outlook
    name = volume.series.removeprefix("volume:")
    growth = _drivers(drivers, top)
    as_of = outlook.as_of if outlook is not None else day
    details: dict = {"kind": "registry_capacity_alert", "series": volume.series, "volume": name,
                     "as_of": as_of.isoformat() if as_of else None,
                     "at_risk": bool(outlook and outlook.at_risk), "severity": None,
                     "model": volume.forecast.model if volume.forecast else None, "reason": volume.reason,
                     "top_namespaces": growth}
    if outlook is None or outlook.p_full is None:
        summary = outlook.summary if outlook is not None else volume.reason
        text = f"{name}: no alert possible: {summary}"
        return AlertMessage(volume.series, None, f"no alert: {name}: {summary}", text,
                            f"<p>{html.escape(text)}</p>", details, None)
    fingerprint = outlook.fingerprint if outlook.at_risk else None
    days = outlook.days_to_full
    details.update({
        "severity": fingerprint.severity if fingerprint else None,
        "p_full_within_lead": outlook.p_full_within_lead,
        "lead_time_days": outlook.lead_time_days, "alert_probability": outlook.alert_probability,
        "used_bytes": outlook.used_bytes, "capacity_bytes": outlook.capacity_bytes,
        "days_to_full": {"median": days.median, "lo80": days.lo80, "hi80": days.hi80},
        "crosses_10": outlook.crosses_10.isoformat() if outlook.crosses_10 else None,
        "crosses_50": outlook.crosses_50.isoformat() if outlook.crosses_50 else None,
        "full_by": fingerprint.full_by.isoformat() if fingerprint else None,
    })
    risk = f"{outlook.p_full_within_lead:.0%} likely full within {outlook.lead_time_days} days"
    if fingerprint is None:
        subject = f"no alert: registry storage {name}: {risk} (alert above {outlook.alert_probability:.0%})"
    else:
        interval = (f"about {days.median} days, 80%: {days.lo80}-{days.hi80 if days.hi80 is not None else 'later'}"
                    if days.median is not None else f"10% within {days.lo80} days")
        subject = f"[{fingerprint.severity}] registry storage {name}: {risk} ({interval})"
    facts = _facts(volume)
    text = "\n".join([f"Registry storage {name} as of {outlook.as_of.isoformat()}: {risk}.", "",
                       *(f"{label}: {value}" for label, value in facts), *_growth_lines(growth),
                       *(["", f"What helps: {REMEDIES}."] if fingerprint else [])])
    return AlertMessage(volume.series, details["severity"], subject, text,
                        _html(subject, facts, growth, remedies=fingerprint is not None), details,
                        volume.chart() if fingerprint is not None else None)


def _facts(volume: VolumeForecast) -> list[tuple[str, str]]:
    outlook = volume.outlook
    capacity = outlook.capacity_bytes
    likely = [f"{label} by {when.isoformat()}" for label, when in (("10%", outlook.crosses_10),
                                                                    ("50%", outlook.crosses_50)) if when]
    return [
        ("P(full within the lead time)", (f"{outlook.p_full_within_lead:.0%} within {outlook.lead_time_days} days "
                                          f"(alert above {outlook.alert_probability:.0%})")),
        ("Used", f"{outlook.used_bytes / GIB:.1f} of {capacity / GIB:.1f} GiB ({outlook.used_bytes / capacity:.0%})"),
        ("Days to full", _days_text(outlook.days_to_full)),
        ("Likely full by", ", ".join(likely) or "-"),
        ("Model", f"{volume.forecast.model}: {volume.reason}"),
    ]


def _growth_lines(growth: list[dict]) -> list[str]:
    if not growth:
        return []
    return ["", "Fastest-growing namespaces (bytes first pushed in the last 30 days):",
            *(f"  {entry['namespace']:<30} {entry['added_bytes'] / GIB:8.2f} GiB  ({entry['share']:.0%})"
              for entry in growth)]


def _html(subject: str, facts: list[tuple[str, str]], growth: list[dict], *, remedies: bool) -> str:
    rows = "".join(f"<tr><th align='left'>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
                   for label, value in facts)
    body = [f"<p><b>{html.escape(subject)}</b></p>", f"<table>{rows}</table>"]
    if growth:
        growth_rows = "".join(f"<tr><td>{html.escape(entry['namespace'])}</td>"
                              f"<td align='right'>{entry['added_bytes'] / GIB:.2f} GiB</td>"
                              f"<td align='right'>{entry['share']:.0%}</td></tr>" for entry in growth)
        body.append("<p>Fastest-growing namespaces (bytes first pushed in the last 30 days):</p>"
                    f"<table><tr><th>namespace</th><th>added</th><th>share</th></tr>{growth_rows}</table>")
    if remedies:
        body.append(f"<p>What helps: {html.escape(REMEDIES)}. The chart is attached ({CHART_FILENAME}).</p>")
    return "\n".join(body)


# ------------------------------------------------------------------------------ candidates
@dataclass(frozen=True)
class Candidate:
    """One volume's situation after a forecast run, and the message an alert about it carries."""

    series: str
    as_of: date
    at_risk: bool
    p_full_within_lead: float | None
    fingerprint: AlertFingerprint | None
    message: AlertMessage

    @classmethod
    def of(cls, volume: VolumeForecast, drivers: pd.DataFrame | None, *, top: int, day: date) -> Candidate:
        outlook = volume.outlook
        at_risk = bool(outlook and outlook.at_risk and outlook.fingerprint)
        return cls(volume.series, outlook.as_of if outlook else day, at_risk,
                   outlook.p_full_within_lead if outlook and outlook.p_full is not None else None,
                   outlook.fingerprint if at_risk else None, compose(volume, drivers, top=top, day=day))

    def to_row(self) -> dict:
        fingerprint = self.fingerprint
        return {"series": self.series, "as_of": self.as_of, "at_risk": self.at_risk,
                "p_full_within_lead": self.p_full_within_lead, "severity": self.message.severity,
                "band": fingerprint.band if fingerprint else None,
                "full_by": fingerprint.full_by if fingerprint else None,
                "capacity_bytes": fingerprint.capacity_bytes if fingerprint else None,
                "subject": self.message.subject, "text": self.message.text, "html": self.message.html,
                "details": json.dumps(self.message.details), "chart_png": self.message.chart_png}

    @classmethod
    def from_row(cls, row: Mapping) -> Candidate:
        at_risk = bool(row["at_risk"])
        fingerprint = (AlertFingerprint(str(row["series"]), float(row["capacity_bytes"]), int(row["band"]),
                                        _as_date(row["full_by"])) if at_risk else None)
        chart = row["chart_png"]
        p_full = row["p_full_within_lead"]
        message = AlertMessage(str(row["series"]), row["severity"] if at_risk else None, str(row["subject"]),
                               str(row["text"]), str(row["html"]), json.loads(row["details"]),
                               bytes(chart) if chart is not None and not pd.isna(chart) else None)
        return cls(str(row["series"]), _as_date(row["as_of"]), at_risk,
                   None if p_full is None or pd.isna(p_full) else float(p_full), fingerprint, message)


def _as_date(value) -> date:
    return value if isinstance(value, date) and not isinstance(value, datetime) else pd.Timestamp(value).date()


def candidates(run: ForecastRun, *, top_namespaces: int = 5) -> list[Candidate]:
    """Every volume's alert candidate of a forecast run."""
    drivers = run.namespaces.drivers if run.namespaces is not None else None
    return [Candidate.of(volume, drivers, top=top_namespaces, day=run.day) for volume in run.volumes]


def candidate_frame(items: Iterable[Candidate]) -> pd.DataFrame:
    """Candidates as rows of the capacity_alerts contract (also for none)."""
    return pa.Table.from_pylist([item.to_row() for item in items], schema=CAPACITY_ALERTS.schema).to_pandas()


def read_candidates(lake: Lake, day: date, run_id: str | None = None) -> list[Candidate]:
    """The alert candidates a forecast run committed for `day` (the latest run's, by default)."""
    frame = lake.read(CAPACITY_ALERTS, day, run_id=run_id)
    return [Candidate.from_row(row) for row in frame.to_dict(orient="records")]


# ------------------------------------------------------------------------------ the decision
@dataclass(frozen=True)
class Sent:
    """The last alert a channel got about a series."""

    fingerprint: AlertFingerprint
    as_of: date                # the forecast day the alert was about
    at: pd.Timestamp           # when it was sent
    channel: str


@dataclass(frozen=True)
class AlertDecision:
    series: str
    at_risk: bool
    severity: str | None
    due: bool                          # the situation is news to at least one channel
    notify: tuple[str, ...]            # channels to tell now
    already_told: tuple[str, ...]      # channels that know this situation
    clear: bool                        # the risk went away after an alert: re-arm every channel
    reason: str

    def as_dict(self) -> dict:
        return {"series": self.series, "at_risk": self.at_risk, "severity": self.severity, "fires": self.due,
                "notify": list(self.notify), "already_told": list(self.already_told), "clear": self.clear,
                "reason": self.reason}


def read_deliveries(lake: Lake, day: date, *, lookback_days: int = LOOKBACK_DAYS) -> pd.DataFrame:
    """The delivery log up to the end of `day` (empty if nothing was ever sent)."""
    try:
        return lake.read_range(ALERT_DELIVERIES, day - timedelta(days=lookback_days), day)
    except LakeNotFound:
        return ALERT_DELIVERIES.schema.empty_table().to_pandas()


def last_sent(deliveries: pd.DataFrame) -> dict[str, dict[str, Sent]]:
    """Per series and channel, the last alert sent since the risk last went away."""
    state: dict[str, dict[str, Sent]] = {}
    for row in deliveries.sort_values("at", kind="stable").itertuples(index=False):
        channels = state.setdefault(row.series, {})
        if row.event == CLEARED:
            channels.clear()
        else:
            fingerprint = AlertFingerprint(row.series, float(row.capacity_bytes), int(row.band), _as_date(row.full_by))
            channels[row.channel] = Sent(fingerprint, _as_date(row.as_of), pd.Timestamp(row.at), row.channel)
    return state


def decide(candidate: Candidate, channels: Sequence[str], sent: Mapping[str, Sent]) -> AlertDecision:
    """Who must be told about this candidate now, and why (or why not)."""
    if not candidate.at_risk or candidate.fingerprint is None:
        reason = candidate.message.subject.removeprefix("no alert: ")
        if sent:
            reason += "; the risk went away since the last alert: the next one will be sent again"
        return AlertDecision(candidate.series, False, None, False, (), (), bool(sent), reason)
    fingerprint = candidate.fingerprint
    latest = max(sent.values(), key=lambda entry: entry.at) if sent else None
    news = {channel: what_changed(sent[channel].fingerprint if channel in sent else None, fingerprint)
            for channel in channels}
    notify = tuple(channel for channel in channels if news[channel] is not None)
    told = tuple(channel for channel in channels if news[channel] is None)
    change = what_changed(latest.fingerprint if latest else None, fingerprint)
    if not channels:
        due = change is not None
        reason = (f"{change}; no notifiers are configured (forecast.alerts.notifiers), so nothing is sent"
                  if due else _unchanged(latest))
    elif notify:
        due = True
        first = next(news[channel] for channel in notify)
        reason = change or first
        if told:
            reason = f"{', '.join(notify)}: {first} ({', '.join(told)} already told)"
    else:
        due, reason = False, _unchanged(latest)
    return AlertDecision(candidate.series, True, fingerprint.severity, due, notify, told, False, reason)


def _unchanged(latest: Sent | None) -> str:
    assert latest is not None
    previous = latest.fingerprint
    return (f"unchanged since the alert of {latest.as_of.isoformat()} ({previous.severity}, likely full by "
            f"{previous.full_by.isoformat()}): not repeated")


def decisions(lake: Lake, day: date, items: Sequence[Candidate], channels: Sequence[str]) -> list[AlertDecision]:
    """What `deliver` would do for these candidates, without sending or recording anything."""
    state = last_sent(read_deliveries(lake, day))
    return [decide(item, channels, state.get(item.series, {})) for item in items]


def deliver(lake: Lake, day: date, run_id: str, items: Sequence[Candidate], senders: Mapping[str, Sender], *,
            now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> list[AlertDecision]:
    """Tell every channel that has not been told, logging each delivery the moment it succeeds.

    A failing channel does not stop the others; afterwards AlertDeliveryError names the
    failures, and a retry tells only the channels that are still missing.
    """
    state = last_sent(read_deliveries(lake, day))
    results: list[AlertDecision] = []
    failures: list[str] = []
    for item in items:
        decision = decide(item, list(senders), state.get(item.series, {}))
        results.append(decision)
        if decision.clear:
            lake.append(ALERT_DELIVERIES, day, run_id,
                        _log_rows(item, ANY_CHANNEL, CLEARED, None, run_id, now()))
            log.info("%s: %s", item.series, decision.reason)
        for channel in decision.notify:
            try:
                senders[channel](item.message)
            except Exception as error:       # one channel down must not silence the others
                detail = str(error) if isinstance(error, DeliveryFailed) else type(error).__name__
                failures.append(f"{channel} for {item.series}: {detail}")
                log.error("%s: the %s notifier failed: %s", item.series, channel, detail)
                continue
            lake.append(ALERT_DELIVERIES, day, run_id, _log_rows(item, channel, SENT, item.fingerprint, run_id, now()))
            log.info("%s: %s alert sent to %s (%s)", item.series, decision.severity, channel, decision.reason)
        if not decision.notify and not decision.clear:
            log.info("%s: %s", item.series, decision.reason)
    if failures:
        raise AlertDeliveryError("capacity alert not delivered to " + "; ".join(failures)
                                 + ". Channels that were told are logged and will not be told again on a retry")
    return results


def _log_rows(item: Candidate, channel: str, event: str, fingerprint: AlertFingerprint | None, run_id: str,
              at: datetime) -> pd.DataFrame:
    row = {"series": item.series, "as_of": item.as_of, "channel": channel, "event": event,
           "band": fingerprint.band if fingerprint else None, "full_by": fingerprint.full_by if fingerprint else None,
           "capacity_bytes": fingerprint.capacity_bytes if fingerprint else None, "run_id": run_id, "at": at}
    return pa.Table.from_pylist([row], schema=ALERT_DELIVERIES.schema).to_pandas()
