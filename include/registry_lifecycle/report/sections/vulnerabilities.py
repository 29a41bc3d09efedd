"""Vulnerability posture: how much of the registry is scanned, what is open, how fast it is fixed.

Findings come from the stored `scans` (Trivy reports, one row per image, vulnerability and
package). Three views, each stated in the report:

- images: the findings of each image's latest scan up to the period's end, for the images the
  registry still holds at the closing snapshot. Their age counts from the first scan that
  reported the finding on that image.
- workloads: what a workload's pod template runs changes with each rollout; a finding is
  remediated for a workload when, at a later snapshot, the image it runs has been scanned and
  no longer reports it. Seen at snapshot resolution, so the remediation day is the first
  snapshot that shows it (an upper bound). These give the mean time to remediate and the
  breaches of the SLA (`report.vulnerability_sla_days`, 30 by default) for critical and high
  findings that have a fix.
- vulnerable images still retained: stored images whose latest scan reports a critical or
  high finding, split by whether any workload still uses them.

A scanner that finds nothing leaves no row in `scans`, so coverage counts images with at least
one finding on record: it is a lower bound, and the report says so.
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...config import Policy
from ..evidence import PeriodData, SnapshotRef
from ..frames import DEPLOYED_SOURCES, RUNNING_SOURCES, platform_images
from ..section import NO_DATA, Chart, Fact, Section, Table, share

SEVERITY_ORDER = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "UNKNOWN")
SLA_SEVERITIES = ("CRITICAL", "HIGH")
AGE_BUCKETS = (0, 30, 90, np.inf)
AGE_LABELS = ("0-30 days", "31-90 days", "over 90 days")
FINDING = ["digest", "vuln_id", "package"]
WORKLOAD = ["cluster", "namespace", "kind", "name", "container"]
OPEN, REMEDIATED, UNVERIFIED, REMOVED = "open", "remediated", "not yet rescanned", "workload removed"


def _end_of(day) -> pd.Timestamp:
    return pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


def latest_findings(scans: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The findings of each image's latest scan up to `as_of`, with the first time each was reported."""
    known = scans[scans["scanned_at"] <= as_of]
    first_seen = known.groupby(FINDING, as_index=False)["scanned_at"].min().rename(columns={"scanned_at": "first_seen"})
    latest = known[known["scanned_at"] == known.groupby("digest")["scanned_at"].transform("max")]
    return latest.merge(first_seen, on=FINDING, how="left")


def open_findings_table(findings: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Counts by severity, fixability and age at `as_of`."""
    age = (as_of - findings["first_seen"]).dt.days
    table = findings.assign(fixable=np.where(findings["fixed_version"].notna(), "fix available", "no fix"),
                            age=pd.cut(age, AGE_BUCKETS, labels=AGE_LABELS, include_lowest=True, right=True))
    counts = table.groupby(["severity", "fixable", "age"], observed=False).size().unstack("age", fill_value=0)
    counts = counts.reindex(columns=list(AGE_LABELS), fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts = counts.reset_index()
    counts["severity"] = pd.Categorical(counts["severity"], [s for s in SEVERITY_ORDER if s in set(counts["severity"])]
                                        + sorted(set(counts["severity"]) - set(SEVERITY_ORDER)), ordered=True)
    return counts[counts["total"] > 0].sort_values(["severity", "fixable"]).reset_index(drop=True).astype(
        {"severity": str})


def workload_findings(deployments: pd.DataFrame, scans: pd.DataFrame, severities=SLA_SEVERITIES) -> pd.DataFrame:
    """One row per (workload container, vulnerability, package) that was ever open at a snapshot.

    `deployments`: one row per (workload container, snapshot day) with the digest it ran
    (columns WORKLOAD + day + digest). Returns first_seen (scan time), last_open (day),
    status (open | remediated | not yet rescanned | workload removed), remediated_on (day),
    fixable and severity.
    """
    columns = [*WORKLOAD, "vuln_id", "package", "severity", "fixable", "first_seen", "last_open", "status",
               "remediated_on", "days_to_remediate"]
    if deployments.empty or scans.empty:
        return pd.DataFrame(columns=columns)
    runs = deployments.assign(as_of=deployments["day"].map(_end_of)).sort_values("as_of")
    scan_times = scans[["digest", "scanned_at"]].drop_duplicates().sort_values("scanned_at")
    runs = pd.merge_asof(runs, scan_times, left_on="as_of", right_on="scanned_at", by="digest", direction="backward")
    first_seen = scans.groupby(FINDING)["scanned_at"].min().rename("first_seen")
    relevant = scans[scans["severity"].isin(severities)]
    open_rows = runs.dropna(subset=["scanned_at"]).merge(
        relevant[[*FINDING, "scanned_at", "severity", "fixed_version"]], on=["digest", "scanned_at"])
    if open_rows.empty:
        return pd.DataFrame(columns=columns)
    open_rows = open_rows.join(first_seen, on=FINDING)
    key = [*WORKLOAD, "vuln_id", "package"]
    findings = open_rows.groupby(key).agg(
        severity=("severity", "first"), fixable=("fixed_version", lambda values: values.notna().any()),
        first_seen=("first_seen", "min"), last_open=("day", "max")).reset_index()
    # What the workload ran at each later snapshot, and whether that image had been scanned.
    later = findings[[*key, "last_open"]].merge(runs[[*WORKLOAD, "day", "scanned_at"]], on=WORKLOAD)
    later = later[later["day"] > later["last_open"]]
    rescanned = later.dropna(subset=["scanned_at"]).groupby(key)["day"].min().rename("remediated_on")
    seen_after = later.groupby(key)["day"].max().rename("seen_after")
    findings = findings.join(rescanned, on=key).join(seen_after, on=key)
    last_day = runs["day"].max()
    findings["status"] = np.select(
        [findings["remediated_on"].notna(), findings["seen_after"].notna(), findings["last_open"] == last_day],
        [REMEDIATED, UNVERIFIED, OPEN], default=REMOVED)
    remediated = pd.to_datetime(findings["remediated_on"]).dt.tz_localize("UTC")
    findings["days_to_remediate"] = (remediated - findings["first_seen"].dt.normalize()).dt.days
    return findings[columns]


def sla_breaches(findings: pd.DataFrame, first, last, sla_days: int) -> pd.DataFrame:
    """Fixable critical/high workload findings not remediated within `sla_days` whose deadline
    fell on or before the period's last day while they were still unremediated."""
    if findings.empty:
        return findings.assign(deadline=pd.Series(dtype=object))
    fixable = findings[findings["fixable"].astype(bool) & findings["severity"].isin(SLA_SEVERITIES)]
    # Compared as UTC midnights: the deadline is a day, remediation is seen on a snapshot day.
    deadline = (fixable["first_seen"] + pd.Timedelta(days=sla_days)).dt.normalize()
    resolved = pd.to_datetime(fixable["remediated_on"]).dt.tz_localize("UTC")
    last_open = pd.to_datetime(fixable["last_open"]).dt.tz_localize("UTC")
    first, last = pd.Timestamp(first, tz="UTC"), pd.Timestamp(last, tz="UTC")
    still_open = fixable["status"].isin([OPEN, UNVERIFIED])
    breached = (deadline <= last) & ((still_open & (last_open >= first))
                                     | (fixable["status"].eq(REMEDIATED) & (resolved > deadline) & (resolved >= first)))
    return fixable[breached].assign(deadline=deadline[breached].dt.date)


def deployments_over(data: PeriodData, refs: list[SnapshotRef]) -> pd.DataFrame:
    frames = []
    for ref in refs:
        references = data.snapshot("references", ref)
        active = references[references["source"].isin(DEPLOYED_SOURCES) & references["active"]
                            & references["digest"].notna()]
        frames.append(active[[*WORKLOAD, "digest"]].drop_duplicates(WORKLOAD).assign(day=ref.day))
    if not frames:
        return pd.DataFrame(columns=[*WORKLOAD, "digest", "day"])
    return pd.concat(frames, ignore_index=True)


def chart(table: pd.DataFrame) -> bytes:
    figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    by_severity = table.groupby("severity", sort=False)[list(AGE_LABELS)].sum()
    bottom = np.zeros(len(by_severity))
    for label, color in zip(AGE_LABELS, ("tab:olive", "tab:orange", "tab:red")):
        axes.bar(by_severity.index, by_severity[label], bottom=bottom, label=label, color=color)
        bottom += by_severity[label].to_numpy()
    axes.set_ylabel("open findings")
    axes.set_title("Open findings in stored images at the period's end, by severity and age")
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("vulnerabilities", "Vulnerability posture",
                      "Scan coverage, open findings by severity, age and fixability, breaches of the remediation SLA, "
                      "mean time to remediate, and vulnerable images still retained.",
                      datasets=["scans", "images", "references"])
    period, end_ref = data.period, data.end_snapshot
    history_days = [d for d in data.days("scans") if d <= period.last]
    scans = data.read_period("scans", first=history_days[0], last=period.last) if history_days else \
        data.read_period("scans")
    scan_days = sorted({d for d in scans["scanned_at"].dt.date if period.contains(d)}) if len(scans) else []
    if end_ref is None or scans.empty:
        section.no_data("No data: " + ("no vulnerability scan is stored up to the period's end."
                                       if scans.empty else "no cluster snapshot was stored in this period."))
        section.status = NO_DATA
        return section
    as_of = _end_of(period.last)
    sla = policy.report.vulnerability_sla_days
    images = data.snapshot("images", end_ref)
    scannable = platform_images(images)
    references = data.snapshot("references", end_ref)
    running = set(references.loc[references["source"].isin(RUNNING_SOURCES) & references["active"], "digest"].dropna())
    in_period = scans[scans["scanned_at"].dt.date.between(period.first, period.last)]
    scanned = set(in_period["digest"])
    running_images = scannable[scannable["digest"].isin(running)]

    findings = latest_findings(scans, as_of)
    retained = findings[findings["digest"].isin(set(images["digest"]))]
    table = open_findings_table(retained, as_of)
    severe = retained[retained["severity"].isin(SLA_SEVERITIES)]
    vulnerable = images[images["digest"].isin(set(severe["digest"]))].assign(running=lambda f: f["digest"].isin(running))
    counts = severe.groupby("digest").agg(critical=("severity", lambda s: int((s == "CRITICAL").sum())),
                                          high=("severity", lambda s: int((s == "HIGH").sum())),
                                          with_fix=("fixed_version", lambda s: int(s.notna().sum())),
                                          last_scanned=("scanned_at", "max"))
    vulnerable_table = vulnerable[["digest", "repository", "size_bytes", "created_at", "running"]].join(
        counts, on="digest").sort_values(["running", "critical", "high"], ascending=False)

    refs = [ref for ref in [data.start_snapshot, *data.snapshot_refs_in_period()] if ref is not None]
    refs = list({ref.day: ref for ref in refs}.values())
    tracked = workload_findings(deployments_over(data, refs), scans)
    breaches = sla_breaches(tracked, period.first, period.last, sla)
    remediated = tracked[(tracked["status"] == REMEDIATED)
                         & pd.to_datetime(tracked["remediated_on"]).dt.date.between(period.first, period.last)]

    def open_count(severity: str) -> int:
        return int((retained["severity"] == severity).sum())

    section.facts += [
        Fact("scan_days", "Scan days in the period", len(scan_days),
             detail=", ".join(d.isoformat() for d in scan_days) or None),
        Fact("coverage_all", "Stored images scanned in the period", share(len(set(scannable["digest"]) & scanned),
                                                                          len(scannable)), "share",
             f"{len(set(scannable['digest']) & scanned)} of {len(scannable)} platform images (no indexes, no referrers)"),
        Fact("coverage_running", "Running images scanned in the period",
             share(len(set(running_images["digest"]) & scanned), len(running_images)), "share",
             f"{len(set(running_images['digest']) & scanned)} of {len(running_images)} images used by active workloads"),
        Fact("open_critical", "Open critical findings (stored images)", open_count("CRITICAL")),
        Fact("open_high", "Open high findings (stored images)", open_count("HIGH")),
        Fact("open_medium", "Open medium findings (stored images)", open_count("MEDIUM")),
        Fact("open_low", "Open low findings (stored images)", open_count("LOW")),
        Fact("open_fixable_share", "Open findings with a fix available",
             share(int(retained["fixed_version"].notna().sum()), len(retained)), "share"),
        Fact("sla_breaches", f"Breaches of the {sla}-day critical/high SLA", len(breaches),
             detail="workload findings with a fix, not remediated within the SLA"),
        Fact("remediated", "Workload findings remediated in the period (critical/high)", len(remediated)),
        Fact("mttr_days", "Mean time to remediate (critical/high)",
             float(remediated["days_to_remediate"].mean()) if len(remediated) else None, "days",
             "from the first scan reporting it to the first snapshot showing the workload on a rescanned image "
             "without it"),
        Fact("vulnerable_retained", "Stored images with critical/high findings", len(vulnerable_table)),
        Fact("vulnerable_retained_unused", "... of which no workload uses", int((~vulnerable_table["running"]).sum()),
             detail="candidates for deletion"),
        Fact("vulnerable_retained_bytes", "Size of stored images with critical/high findings",
             int(vulnerable_table["size_bytes"].sum()), "bytes"),
    ]
    section.notes.append("A scan that finds nothing leaves no row in the stored scans, so coverage counts images with "
                         "at least one finding on record: it is a lower bound.")
    if not scan_days:
        section.no_data("No scan was stored inside the period; open findings come from earlier scans.")
    if len(refs) < 2:
        section.no_data("Fewer than two snapshots cover the period: remediation cannot be observed.")
    elif not len(remediated):
        section.notes.append("No workload finding was seen remediated in the period, so no mean time to remediate "
                             "can be given.")
    section.tables.append(Table("vulnerabilities-open-findings", "Open findings in stored images", table,
                                shown=len(table), caption=f"latest scan of each stored image up to {period.last}"))
    shown = ("namespace", "kind", "name", "vuln_id", "package", "severity", "fixable", "first_seen", "status",
             "remediated_on")
    section.tables.append(Table("vulnerabilities-sla-breaches", f"Breaches of the {sla}-day SLA", breaches,
                                columns=(*shown, "deadline")))
    section.tables.append(Table("vulnerabilities-workload-findings", "Critical/high findings per workload", tracked,
                                shown=15, columns=(*shown, "days_to_remediate")))
    section.tables.append(Table("vulnerabilities-retained-images", "Stored images with critical/high findings",
                                vulnerable_table))
    if len(table):
        section.charts.append(Chart("vulnerabilities-open", "Open findings by severity and age", chart(table)))
    return section
