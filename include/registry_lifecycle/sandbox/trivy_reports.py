"""Vulnerability scan reports for the sandbox, in the shape `trivy image --format json` writes.

CVEs are published over the history; a CVE in a base image is fixed by the next monthly base
build after its publication, and a CVE in an application's dependencies by the next
dependency-layer change. A scan on day D therefore shows images built on old bases (or with
old dependencies) accumulating findings, which is what makes old images "vulnerable images
still retained" in the compliance report.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from .world import INTERNAL_REGISTRY, World, rfc3339

SEVERITIES = ("LOW", "MEDIUM", "MEDIUM", "HIGH", "HIGH", "CRITICAL")
OS_PACKAGES = ("openssl", "glibc", "curl", "zlib", "systemd-libs", "krb5-libs", "expat", "libxml2")
APP_PACKAGES = ("requests", "urllib3", "jinja2", "express", "lodash", "jackson-databind", "netty-codec", "protobuf")


@dataclass(frozen=True)
class Cve:
    vuln_id: str
    severity: str
    package: str
    published: datetime
    layer_kind: str        # "os" (fixed by a base rebuild) or "app" (fixed by a dependency update)


def cve_catalogue(world: World) -> list[Cve]:
    rng = random.Random(f"cves-{world.seed}")
    cves = []
    day = world.start - timedelta(days=120)
    number = 20000
    while day < world.future_until:
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            number += rng.randint(1, 40)
            layer_kind = "os" if rng.random() < 0.6 else "app"
            cves.append(Cve(f"CVE-{day.year}-{number}", rng.choice(SEVERITIES),
                            rng.choice(OS_PACKAGES if layer_kind == "os" else APP_PACKAGES), day, layer_kind))
        day += timedelta(days=3)
    return cves


def findings(world: World, digest: str, at: datetime, cves: list[Cve]) -> list[dict]:
    """Trivy `Vulnerabilities` entries for one image scanned at `at`."""
    image = world.images[digest]
    rng = random.Random(f"{world.seed}-{digest}")
    out = []
    for cve in cves:
        if cve.published > at or cve.published > image.created + timedelta(days=400):
            continue
        # Each image's packages expose it to a random subset of CVEs (about one in six).
        if rng.random() > 0.17:
            continue
        fixed_in_base = cve.published + timedelta(days=31)      # next monthly base build
        if image.created >= fixed_in_base:
            continue
        installed = f"{rng.randint(1, 3)}.{rng.randint(0, 9)}.{rng.randint(0, 20)}"
        fixed = None if rng.random() < 0.15 else installed.rsplit(".", 1)[0] + f".{rng.randint(21, 40)}"
        out.append({"VulnerabilityID": cve.vuln_id, "PkgName": cve.package, "InstalledVersion": installed,
                    "FixedVersion": fixed or "", "Severity": cve.severity, "Status": "fixed" if fixed else "affected",
                    "PrimaryURL": f"https://avd.aquasec.com/nvd/{cve.vuln_id.lower()}",
                    "Title": f"{cve.package}: vulnerability {cve.vuln_id}"})
    return out


def report(world: World, digest: str, at: datetime, cves: list[Cve]) -> dict:
    image = world.images[digest]
    reference = f"{INTERNAL_REGISTRY}/{image.repository}@{digest}"
    vulnerabilities = findings(world, digest, at, cves)
    return {
        "SchemaVersion": 2,
        "CreatedAt": rfc3339(at),
        "ArtifactName": reference,
        "ArtifactType": "container_image",
        "Metadata": {"OS": {"Family": "redhat", "Name": "9.4"}, "ImageID": image.config_digest,
                     "RepoDigests": [reference], "ImageConfig": {"architecture": image.architecture, "os": image.os}},
        "Results": [
            {"Target": f"{reference} (redhat 9.4)", "Class": "os-pkgs", "Type": "redhat",
             "Vulnerabilities": [v for v in vulnerabilities if v["PkgName"] in OS_PACKAGES]},
            {"Target": "app/requirements.lock", "Class": "lang-pkgs", "Type": "pip",
             "Vulnerabilities": [v for v in vulnerabilities if v["PkgName"] not in OS_PACKAGES]},
        ],
    }


def write_scan_reports(world: World, root: Path, day: datetime) -> list[Path]:
    """The scanner's reports for `day`: every image tagged in a staging or prod stream, scanned
    on the 1st of the month (with the monthly scanner sweep), written atomically and idempotently."""
    if day.day != 1:
        return []
    at = day.replace(hour=1, minute=30, second=0, microsecond=0)
    cves = cve_catalogue(world)
    folder = root / f"dt={day.date().isoformat()}"
    written = []
    for stream in world.streams.values():
        if world.namespaces.get(stream.namespace, {}).get("env") not in ("staging", "prod"):
            continue
        for tag, history in stream.tags.items():
            items = history.at(at)
            if not items or tag.endswith(".sig") or not world.images[items[0].digest].exists_at(at):
                continue
            image = world.images[items[0].digest]
            if image.kind not in ("app",):
                continue
            path = folder / f"{items[0].digest.split(':', 1)[1]}.json"
            if path in written:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            temp = path.with_suffix(".tmp")
            temp.write_text(json.dumps(report(world, items[0].digest, at, cves), indent=1))
            os.replace(temp, path)
            written.append(path)
    return written
