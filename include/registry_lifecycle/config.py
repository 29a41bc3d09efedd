"""The policy: one YAML file (policy as code) that says where data comes from and how the
lifecycle may act on it.

Loading is strict: an unknown key is an error (a typo such as `keep_tag_revison` must not
silently fall back to a default and delete more than intended), and every error names the
field's path and what would fix it.
"""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policies" / "default.yaml"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """'90d', '36h', '60m', '30s', '2w' (or a number of seconds) -> timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; write a number and a unit, e.g. 60m, 36h, 90d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})


def parse_bytes(value: Any) -> int:
    """'2TiB', '500GiB', '10GB' (or a plain integer) -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = re.match(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; write e.g. 500GiB, 2TiB or a number of bytes")
    factor = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
              "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}[match.group(2)]
    return int(float(match.group(1)) * factor)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_bytes)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------ sources
class OpenShiftSource(_Strict):
    connection_id: str = "openshift_default"
    cluster: str = Field("default", description="name recorded in references.cluster")
    page_size: int = Field(500, ge=1, le=10_000)
    max_retries: int = Field(4, ge=0, le=20)
    namespaces: list[str] = Field(default_factory=list, description="empty = all namespaces")


class RegistrySource(_Strict):
    connection_id: str = "registry_default"
    concurrency: int = Field(8, ge=1, le=64)
    page_size: int = Field(1000, ge=1, le=1000, description="distribution refuses n above 1000")
    max_retries: int = Field(4, ge=0, le=20)
    verify_tls: bool = True
    timeout_seconds: float = Field(30, gt=0)


class PrometheusSource(_Strict):
    connection_id: str = "prometheus_default"
    volume: str = "openshift-image-registry/image-registry-storage"
    used_query: str = ('kubelet_volume_stats_used_bytes{namespace="openshift-image-registry",'
                       'persistentvolumeclaim="image-registry-storage"}')
    capacity_query: str = ('kubelet_volume_stats_capacity_bytes{namespace="openshift-image-registry",'
                           'persistentvolumeclaim="image-registry-storage"}')
    step: Duration = timedelta(minutes=5)
    capacity_bytes: ByteSize | None = Field(None, description="for registries on object storage (no PVC)")


class ArchiveSource(_Strict):
    location: str | None = Field(None, description="folder or s3:// prefix; None = not configured")
    connection_id: str = "aws_default"


class Sources(_Strict):
    openshift: OpenShiftSource = OpenShiftSource()
    registry: RegistrySource = RegistrySource()
    prometheus: PrometheusSource = PrometheusSource()
    pulls: ArchiveSource = ArchiveSource()
    scans: ArchiveSource = ArchiveSource()


# ------------------------------------------------------------------------------ validation
class Validation(_Strict):
    max_shrink: dict[str, float] = Field(
        default_factory=lambda: {"images": 0.3, "tags": 0.3, "references": 0.3, "builds": 0.5},
        description="halt when a snapshot dataset shrinks by more than this fraction vs the previous one")
    max_growth_factor: float = Field(5.0, gt=1)
    timestamp_skew: Duration = timedelta(hours=1)

    @field_validator("max_shrink")
    @classmethod
    def _fractions(cls, value: dict[str, float]) -> dict[str, float]:
        for name, fraction in value.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"max_shrink.{name} = {fraction}: use a fraction in (0, 1], e.g. 0.3 for 30%")
        return value


# ------------------------------------------------------------------------------ policy
class Policy(_Strict):
    version: Literal[1] = 1
    sources: Sources = Sources()
    validation: Validation = Validation()


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the field and the fix."""


def _describe(error: dict) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{path}: unknown setting; check the spelling against include/policies/default.yaml"
    if kind == "missing":
        return f"{path}: required setting is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"{path}: {message} (got {error.get('input')!r})"


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file; with no path, the packaged default."""
    path = Path(path) if path is not None else DEFAULT_POLICY
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror}; pass --policy with an existing file") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PolicyError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise PolicyError(f"{path}: the policy must be a mapping of settings, got {type(document).__name__}")
    try:
        return Policy.model_validate(document)
    except ValidationError as exc:
        problems = "\n  - ".join(_describe(error) for error in exc.errors())
        raise PolicyError(f"{path}: invalid policy\n  - {problems}") from None
