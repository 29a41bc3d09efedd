"""What a "report ready" notification says: the period, the headline figures, the exceptions,
and short-lived download links. Composed here as plain text and HTML; sending it is the
Airflow notifiers' job (registry_lifecycle.airflow.report_tasks)."""
from __future__ import annotations

import html
from datetime import datetime


def compose(summary: dict, links: dict[str, str], expires_at: datetime | None, page_hint: str) -> tuple[str, str, str]:
    """(subject, text, html) for `summary` (run.summary). `links`: file name -> presigned URL."""
    period = summary["period"]
    exceptions = summary.get("exceptions") or 0
    subject = (f"Registry compliance report {period} is ready"
               + (f": {exceptions} action(s) without approval" if exceptions else ""))
    opening = (f"The registry compliance report for {period} ({summary['first']} to {summary['last']}) was generated "
               f"at {summary['generated_at']}.")
    lines = [opening, ""]
    lines += [f"- {line['label']}: {line['text']}" for line in summary["headlines"]]
    partial = [key for key, status in summary["sections"].items() if status != "ok"]
    if partial:
        lines += ["", "Sections with partial or no data: " + ", ".join(partial) + "."]
    lines += ["", f"Bundle sha256: {summary['zip_sha256']}"]
    if links:
        until = f" (valid until {expires_at:%Y-%m-%d %H:%M} UTC)" if expires_at else ""
        lines += ["", f"Download{until}:"] + [f"- {name}: {url}" for name, url in links.items()]
    lines += ["", f"All reports: {page_hint}"]
    text = "\n".join(lines)
    items = "".join(f"<li>{html.escape(line['label'])}: <b>{html.escape(line['text'])}</b></li>"
                    for line in summary["headlines"])
    downloads = "".join(f'<li><a href="{html.escape(url, quote=True)}">{html.escape(name)}</a></li>'
                        for name, url in links.items())
    body = (f"<p>The registry compliance report for <b>{html.escape(period)}</b> ({html.escape(summary['first'])} to "
            f"{html.escape(summary['last'])}) was generated at {html.escape(summary['generated_at'])}.</p>"
            f"<ul>{items}</ul>"
            + (f"<p>Sections with partial or no data: {html.escape(', '.join(partial))}.</p>" if partial else "")
            + f"<p>Bundle sha256: <code>{html.escape(summary['zip_sha256'])}</code></p>"
            + (f"<p>Download (links expire {expires_at:%Y-%m-%d %H:%M} UTC):</p><ul>{downloads}</ul>"
               if links and expires_at else "")
            + f"<p>All reports: {html.escape(page_hint)}</p>")
    return subject, text, body
