"""The report bundle: HTML, PDF, CSV tables, charts and JSON evidence in one folder, a
SHA-256 manifest of every file, and the same files zipped.

`MANIFEST.sha256` uses the format of coreutils' `sha256sum` (`<hex>  <path>`), so an auditor
checks a bundle with `sha256sum -c MANIFEST.sha256` and nothing of ours. `verify_bundle` does
the same check on a folder or a zip, and also refuses files the manifest does not list.
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .build import Report
from .export import chart_files, csv_files, evidence_json
from .pdf import render_pdf
from .render import render_html

MANIFEST = "MANIFEST.sha256"
HTML, PDF, EVIDENCE = "report.html", "report.pdf", "evidence.json"
# Fixed timestamp inside the zip, so that the same files always give the same zip bytes.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class BundleError(ValueError):
    """A bundle whose files do not match its manifest; the message lists each mismatch."""


@dataclass(frozen=True)
class Bundle:
    name: str
    folder: Path
    zip_path: Path
    files: dict[str, str] = field(repr=False)     # relative path -> sha256 (the manifest)
    zip_sha256: str = ""

    @property
    def paths(self) -> list[str]:
        return sorted([*self.files, MANIFEST])


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_text(files: dict[str, str]) -> str:
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))


def parse_manifest(text: str) -> dict[str, str]:
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64:
            raise BundleError(f"{MANIFEST} line {number} is not `<sha256>  <path>`: {line!r}")
        entries[path.removeprefix("*")] = digest
    return entries


def bundle_files(report: Report) -> dict[str, bytes]:
    """Every file of the bundle (without the manifest), by relative path."""
    html = render_html(report)
    files = {HTML: html.encode(), PDF: render_pdf(html), EVIDENCE: evidence_json(report)}
    files.update(csv_files(report))
    files.update(chart_files(report))
    return files


def write_bundle(report: Report, out: Path | str) -> Bundle:
    """Write `<out>/<name>/...` with its manifest, and `<out>/<name>.zip`."""
    out = Path(out)
    folder = out / report.name
    files = bundle_files(report)
    digests = {path: sha256(data) for path, data in files.items()}
    manifest = manifest_text(digests).encode()
    for path, data in {**files, MANIFEST: manifest}.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    zip_path = out / f"{report.name}.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in sorted({**files, MANIFEST: manifest}.items()):
            info = zipfile.ZipInfo(f"{report.name}/{path}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return Bundle(report.name, folder, zip_path, digests, sha256(zip_path.read_bytes()))


def _check(files: dict[str, bytes]) -> dict[str, str]:
    if MANIFEST not in files:
        raise BundleError(f"the bundle has no {MANIFEST}")
    listed = parse_manifest(files[MANIFEST].decode())
    problems = []
    for path, digest in sorted(listed.items()):
        if path not in files:
            problems.append(f"{path}: listed in the manifest but missing")
        elif sha256(files[path]) != digest:
            problems.append(f"{path}: sha256 {sha256(files[path])} does not match the manifest's {digest}")
    for path in sorted(set(files) - set(listed) - {MANIFEST}):
        problems.append(f"{path}: present but not listed in the manifest")
    if problems:
        raise BundleError("the bundle does not match its manifest:\n  - " + "\n  - ".join(problems))
    return listed


def verify_bundle(path: Path | str) -> dict[str, str]:
    """Check a bundle folder or zip against its manifest; returns the manifest, or raises BundleError."""
    path = Path(path)
    if path.is_dir():
        files = {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
        return _check(files)
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        roots = {name.split("/", 1)[0] for name in names}
        if len(roots) != 1 or any("/" not in name for name in names):
            raise BundleError(f"{path.name}: expected every file under one folder, found {sorted(roots)}")
        return _check({name.split("/", 1)[1]: archive.read(name) for name in names})
