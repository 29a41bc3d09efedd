"""The policy: one YAML file (policy as code) that says where data comes from and how the
lifecycle may act on it.

Loading is strict: an unknown key is an error (a typo such as `keep_tag_revison` must not
silently fall back to a default and delete more than intended), and every error names the
field's path and what would fix it.
"""
from __future__ import annotations

import fnmatch
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError,
                      ValidationInfo, field_validator, model_validator)

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
    if match:
        return timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    if str(value).startswith("P"):
        # ISO 8601 ("PT5M"): what a policy dumped to JSON/YAML by pydantic contains, so it round-trips.
        try:
            return TypeAdapter(timedelta).validate_python(value)
        except ValidationError:
            pass
    raise ValueError(f"{value!r} is not a duration; write a number and a unit, e.g. 60m, 36h, 90d or 2w")


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


def format_duration(value: timedelta) -> str:
    """timedelta -> the policy's own notation in the largest exact unit: 2d, 36h, 90m, 45s."""
    seconds = value.total_seconds()
    for unit, size in (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


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
    tag_digests_from_imagestreams: bool = Field(
        True, description="trust the cluster step's ImageStream tags for each listed tag's digest instead of one "
        "HEAD per tag: right for the OpenShift image registry, whose tags/list is the ImageStreams; set false "
        "for a plain distribution registry")
    referrers_refresh_days: int = Field(
        14, ge=0, le=90, description="ask each manifest's OCI referrers again once in this many days "
        "(on a day set by its digest); 0 asks on every run")
    images_from_cluster: bool = Field(
        False, description="read image layers, configs and sizes from the cluster's Image objects (as `oc adm "
        "prune images` does) and ask the registry only about indexes, OCI artifacts and images the cluster does "
        "not describe, with repositories and tags from the ImageStreams: no catalog, tag lists or referrers "
        "lookups. Turns a million-tag extraction from hours into minutes; the price is that the manifest blobs "
        "(1-3 KiB per image) of images never fetched are missing from `layers` and their `os` is null")


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


# ------------------------------------------------------------------------------ gc
# Kubernetes' syntax for label and annotation keys (an optional DNS-subdomain prefix and a name).
_KEY = re.compile(r"^(?:[a-z0-9](?:[-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9](?:[-a-z0-9]*[a-z0-9])?)*/)?"
                  r"[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?$")

GcMode = Literal["audit", "approve", "auto"]
# From most to least cautious: where several namespaces hold one image, the first one wins.
GC_MODES_BY_CAUTION: tuple[GcMode, ...] = ("audit", "approve", "auto")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a valid regular expression ({exc})") from None
    return value


def _key(value: str) -> str:
    if not _KEY.match(value):
        raise ValueError("not a Kubernetes label/annotation key; write e.g. registry-lifecycle/legal-hold")
    return value


TagPattern = Annotated[str, AfterValidator(_regex)]
MetadataKey = Annotated[str, AfterValidator(_key)]


class ModeMatch(_Strict):
    env: str | None = Field(None, description="glob on the namespace's environment label, e.g. prod")
    namespace: str | None = Field(None, description="glob on the namespace name, e.g. team-*-dev")

    @model_validator(mode="after")
    def _not_empty(self) -> ModeMatch:
        if self.env is None and self.namespace is None:
            # An empty match would silently apply to every namespace, `mode: auto` included.
            raise ValueError("give env and/or namespace; to match every namespace write namespace: '*'")
        return self

    def matches(self, namespace: str, env: str | None) -> bool:
        return ((self.namespace is None or fnmatch.fnmatchcase(namespace, self.namespace))
                and (self.env is None or (env is not None and fnmatch.fnmatchcase(env, self.env))))


class ModeRule(_Strict):
    match: ModeMatch
    mode: GcMode = Field(description="audit: report only; approve: delete after a recorded approval; "
                                     "auto: delete without approval")


class GcCaps(_Strict):
    max_images: int = Field(2000, ge=1, description="images deleted per run at most (blast radius)")
    max_bytes: Annotated[ByteSize, Field(gt=0)] = Field(
        2 * 2**40, description="bytes freed per run at most, counted as the plan counts them")


class CircuitBreaker(_Strict):
    max_errors: int = Field(5, ge=1, description="stop the run after this many failed deletions")


class RegistryGc(_Strict):
    """The registry's own blob garbage collection, after the manifests are deleted."""

    command: list[str] = Field(
        default_factory=list, description="argv run after the deletions, e.g. a script that makes the registry "
        "read-only and runs `registry garbage-collect CONFIG`; empty = the registry's own pruner frees the blobs "
        "later (OpenShift: the ImagePruner)")
    storage_command: list[str] = Field(
        default_factory=list, description="argv that prints the blob store's used bytes first on stdout (e.g. "
        "du -sb DIR), run before the deletions and after the command; empty = bytes freed are not measured")
    timeout: Duration = Field(timedelta(hours=2), description="the command is stopped and the step fails after this")

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0, e.g. 2h")
        return value


class Approval(_Strict):
    channel: Literal["airflow", "cluster"] = Field(
        "airflow", description="airflow: the HITL ApprovalOperator; cluster: an approval object in "
                               "approvals_namespace, for teams that approve with oc")
    assigned_users: list[str] = Field(default_factory=list, description="who may approve; empty = any DAG editor")
    response_timeout: Duration = Field(timedelta(hours=24), description="rejected when nobody answers in time")
    plan_max_age: Duration = Field(timedelta(hours=48), validate_default=True,   # checked against a changed timeout
                                   description="an older approved plan is re-planned, not executed")
    approvals_namespace: str = "registry-lifecycle-approvals"

    @field_validator("assigned_users")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        for index, user in enumerate(value):
            if not user.strip():
                raise ValueError(f"entry [{index}] is empty; give a user name or remove the entry")
        return value

    @field_validator("response_timeout")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than 0, e.g. 24h")
        return value

    @field_validator("plan_max_age")
    @classmethod
    def _outlives_approval(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        timeout = info.data.get("response_timeout")
        if timeout is not None and value < timeout:
            # A plan approved at the last minute of the window must still be fresh enough to run.
            raise ValueError(f"must be at least response_timeout ({format_duration(timeout)}), or an approval "
                             "given late in the window could never be executed")
        return value

    @field_validator("approvals_namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError("not a namespace name (lower-case letters, digits and '-', at most 63)")
        return value


class GcPolicy(_Strict):
    horizon_days: int = Field(90, ge=1, le=3650,
                              description="an image reused within this many days counts as a wrong deletion")
    threshold: float = Field(0.02, ge=0, le=1, description="largest p_reuse an image may have and still be deleted")
    keep_tag_revisions: int = Field(3, ge=0, description="as oc adm prune: the newest N revisions of every tag stay")
    keep_younger_than: Duration = Field(timedelta(minutes=60),
                                        description="as oc adm prune: images and tag revisions younger than this stay")
    environment_label: MetadataKey = Field("env", description="namespace label that names its environment")
    protected_tag_patterns: dict[str, list[TagPattern]] = Field(
        default_factory=lambda: {"prod": [r"^v?\d+\.\d+\.\d+$", r"^prod$", r"^stable$"]},
        description="environment -> regexes (re.search) on tag names; '*' applies in every environment")
    legal_hold_annotation: MetadataKey = Field(
        "registry-lifecycle/legal-hold", description="on a namespace or ImageStream: keep all of its images")
    dr_namespace_label: str = Field("dr=true", description="key=value that marks disaster-recovery namespaces")
    modes: list[ModeRule] = Field(default_factory=list, description="first match wins; no match = approve")
    caps: GcCaps = GcCaps()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    approval: Approval = Approval()
    backend: Literal["openshift", "oci"] = Field(
        "openshift", description="openshift: untag and delete Image objects through the API, as oc adm prune images "
        "does; oci: DELETE manifests through the registry's v2 API (a plain distribution registry)")
    registry_gc: RegistryGc = RegistryGc()

    @field_validator("keep_younger_than")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative; 0 keeps nothing for its age")
        return value

    @field_validator("protected_tag_patterns")
    @classmethod
    def _environments(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for env in value:
            if not env.strip():
                raise ValueError("an environment name is empty; use the value of the namespace's environment label")
        return value

    @field_validator("dr_namespace_label")
    @classmethod
    def _label_selector(cls, value: str) -> str:
        key, sep, label_value = value.partition("=")
        if not sep or not _KEY.match(key) or not _LABEL_VALUE.match(label_value):
            raise ValueError("write one label as key=value, e.g. dr=true")
        return value

    @property
    def dr_label(self) -> tuple[str, str]:
        key, _, value = self.dr_namespace_label.partition("=")
        return key, value

    def mode_for(self, namespace: str, env: str | None) -> GcMode:
        """The mode of the first rule that matches; approve when none does."""
        for rule in self.modes:
            if rule.match.matches(namespace, env):
                return rule.mode
        return "approve"


# ------------------------------------------------------------------------------ policy
# ------------------------------------------------------------------------------ forecast
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _email_addresses(addresses: list[str]) -> list[str]:
    wrong = [address for address in addresses if not _EMAIL.match(address)]
    if wrong:
        raise ValueError(f"not an email address: {', '.join(map(repr, wrong))}")
    return addresses


EmailAddresses = Annotated[list[str], AfterValidator(_email_addresses)]


class _AlertNotifier(_Strict):
    """A channel that alerts go to (capacity alerts; report notices reuse it). Secrets (SMTP
    password, webhook URL with its token, bearer token) live only in the Airflow Connection
    named by `connection_id`, never in the policy."""

    name: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                             description="names this channel in the delivery log; default: the kind")

    @property
    def channel(self) -> str:
        return self.name or self.kind      # type: ignore[attr-defined]


class EmailAlerts(_AlertNotifier):
    kind: Literal["email"]
    connection_id: str = Field("smtp_default", description="smtp Connection (host, port, login, password)")
    to: EmailAddresses = Field(min_length=1)
    cc: EmailAddresses = Field(default_factory=list)
    from_email: str | None = Field(None, description="default: the Connection's from_email")


class SlackAlerts(_AlertNotifier):
    kind: Literal["slack"]
    connection_id: str = Field("slack_default", description="slackwebhook Connection: the incoming-webhook URL "
                                                            "(or its token path) in the password")


class WebhookAlerts(_AlertNotifier):
    kind: Literal["webhook"]
    connection_id: str = Field(description="http Connection: URL in host/schema/port (+ extra `endpoint`), "
                                           "bearer token in the password, extra `headers`, `ca_bundle`, `verify`")
    include_chart: bool = Field(True, description="send the chart as base64 PNG in the JSON body")
    timeout_seconds: float = Field(10, gt=0, le=120)


AlertNotifier = Annotated[EmailAlerts | SlackAlerts | WebhookAlerts, Field(discriminator="kind")]


class AlertSettings(_Strict):
    """Who is told when the registry may fill, and through which Airflow notifiers."""

    notifiers: list[AlertNotifier] = Field(default_factory=list, description="empty: decide and record, send nothing")
    top_namespaces: int = Field(5, ge=0, le=50, description="fastest-growing namespaces listed in an alert")

    @field_validator("notifiers")
    @classmethod
    def _unique_channels(cls, notifiers: list) -> list:
        channels = [notifier.channel for notifier in notifiers]
        twice = sorted({channel for channel in channels if channels.count(channel) > 1})
        if twice:
            raise ValueError(f"two notifiers are called {', '.join(map(repr, twice))}; give each a distinct `name`")
        return notifiers


class ForecastSettings(_Strict):
    """Capacity forecast: how far ahead to look, and when to wake someone up (alert when the
    registry is at least 20% likely to be full within 30 days: weeks of warning, not the four
    days of kube-prometheus' KubePersistentVolumeFillingUp)."""


    lead_time_days: int = Field(30, ge=1, le=365, description="alert when the volume may be full within this many days")
    alert_probability: float = Field(0.2, gt=0, lt=1,
                                     description="alert when P(full within the lead time) exceeds this")
    min_history_days: int = Field(21, ge=15, description="below this, a drift model with wide intervals stands in "
                                                         "for the backtested models")
    horizon_days: int = Field(90, ge=7, le=730, description="days forecast ahead")
    capacity_bytes: ByteSize | None = Field(None, description="capacity of a registry on object storage (no PVC); "
                                                              "a capacity measured on the volume wins")
    max_gap_days: int = Field(7, ge=1, description="longer gaps in the samples cut the history: only the part after "
                                                   "the gap is modelled")
    backtest_horizon_days: int = Field(28, ge=7, description="days ahead scored by the rolling-origin backtest")
    backtest_origins: int = Field(10, ge=2, description="forecast origins of the rolling-origin backtest")
    backtest_step_days: int = Field(7, ge=1, description="days between backtest origins")
    paths: int = Field(1000, ge=100, description="simulated future paths per forecast")
    seed: int = 0
    alerts: AlertSettings = AlertSettings()


# ------------------------------------------------------------------------------ mirror
_REPOSITORY_PATH = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
# Cloud bills count a "GB" of transfer and storage as 2^30 bytes.
BYTES_PER_GB = 2**30


class MirrorTarget(_Strict):
    """A registry that may hold copies: where it is, what it costs, how to log in (a Connection)."""

    name: str = Field(description="short name used in plans, audit records and exports")
    url: str = Field(description="the target's v2 API and pull host, e.g. https://mirror.eu-west-1.example.com")
    region: str = Field(description="clusters mapped to this region (cluster_regions) pull from it once mirrored")
    connection_id: str = Field(description="Airflow Connection with the target's login, password/token, ca_bundle")
    egress_cost_per_gb: float = Field(ge=0, description="price of one GB moved from the source registry's region to "
                                                        "this one: what each remote pull costs now, and a copy costs once")
    storage_cost_per_gb_month: float = Field(ge=0, description="price of keeping one GB on this target for a month")
    repository_prefix: str = Field("", description="repositories land under this path on the target ('' = same path)")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _DNS_LABEL.match(value):
            raise ValueError("write a short lower-case name of letters, digits and '-', e.g. eu-west")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0]
        if scheme not in ("https", "http") or not host or rest.strip("/") != host:
            raise ValueError("write the registry's root URL, e.g. https://mirror.example.com or https://host:5000")
        return value.rstrip("/")

    @field_validator("repository_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        if value and not _REPOSITORY_PATH.match(value):
            raise ValueError("not a repository path (lower-case components separated by '/'), e.g. mirrors/ocp")
        return value

    @property
    def pull_host(self) -> str:
        """The target as image references write it: `host[:port]`."""
        return self.url.partition("://")[2]

    def repository(self, source_repository: str) -> str:
        """Where a source repository lands on this target."""
        return f"{self.repository_prefix}/{source_repository}" if self.repository_prefix else source_repository


class DrMatch(_Strict):
    env: str | None = Field(None, description="glob on the namespace's environment label, e.g. prod")
    namespace: str | None = Field(None, description="glob on the namespace name")
    cluster: str | None = Field(None, description="glob on references.cluster")

    @model_validator(mode="after")
    def _not_empty(self) -> DrMatch:
        if self.env is None and self.namespace is None and self.cluster is None:
            raise ValueError("give env, namespace and/or cluster; to match every workload write namespace: '*'")
        return self

    def matches(self, namespace: str, env: str | None, cluster: str) -> bool:
        return ((self.namespace is None or fnmatch.fnmatchcase(namespace, self.namespace))
                and (self.env is None or (env is not None and fnmatch.fnmatchcase(env, self.env)))
                and (self.cluster is None or fnmatch.fnmatchcase(cluster, self.cluster)))


class DrRule(_Strict):
    """Every image an active workload matching `match` references exists in at least
    `min_registries` registries, the source registry counted."""

    name: str
    match: DrMatch
    min_registries: int = Field(2, ge=2, le=10)
    targets: list[str] = Field(default_factory=list, description="targets that may hold the copies; empty = any")


class MirrorTransfer(_Strict):
    """How approved copies run: pace, retries and the blast radius of one run."""

    concurrency: int = Field(4, ge=1, le=32, description="images copied in parallel per target")
    bandwidth_limit: Annotated[ByteSize, Field(gt=0)] | None = Field(
        None, description="bytes per second read from the source by all copies of a run; null = unlimited")
    chunk_size: Annotated[ByteSize, Field(ge=64 * 1024)] = Field(
        16 * 2**20, description="blobs larger than this are uploaded in PATCH chunks that resume after a cut")
    max_retries: int = Field(4, ge=0, le=20)
    timeout_seconds: float = Field(120, gt=0)
    max_images: int = Field(5000, ge=1, description="plan lines executed per run at most")
    max_bytes: Annotated[ByteSize, Field(gt=0)] = Field(2**40, description="bytes copied per run at most")
    max_errors: int = Field(5, ge=1, description="a target stops after this many failed images in a run")


class MirrorPolicy(_Strict):
    """What is worth mirroring where: demand by region, prices, DR rules and filters."""

    source_region: str = Field("local", description="region of the registry this lifecycle manages")
    source_pull_host: str = Field("image-registry.openshift-image-registry.svc:5000",
                                  description="the source registry as workloads' image references write it")
    cluster_regions: dict[str, str] = Field(default_factory=dict,
                                            description="cluster (pulls_daily.cluster) -> region; unlisted clusters "
                                                        "are in the source region")
    targets: list[MirrorTarget] = Field(default_factory=list)
    dr_rules: list[DrRule] = Field(default_factory=list)
    allow: list[str] = Field(default_factory=lambda: ["*"], description="globs on repositories that may be mirrored")
    deny: list[str] = Field(default_factory=list, description="globs on repositories never mirrored (wins over allow)")
    lookback_days: int = Field(28, ge=1, le=365, description="pull history that estimates demand")
    horizon_days: int = Field(30, ge=1, le=730, description="a copy must pay for itself within this many days")
    cold_pull_fraction: float = Field(0.25, ge=0, le=1, description="share of pulls that download the image's "
                                                                    "layers (a node without them cached)")
    retire: bool = Field(False, description="plan removing copies that no longer pay for themselves")
    currency: str = "USD"
    transfer: MirrorTransfer = MirrorTransfer()
    approval: Approval = Approval()

    @model_validator(mode="after")
    def _consistent(self) -> MirrorPolicy:
        names = [target.name for target in self.targets]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two targets are called {', '.join(map(repr, twice))}; give each a distinct name")
        for rule in self.dr_rules:
            unknown = [name for name in rule.targets if name not in names]
            if unknown:
                raise ValueError(f"dr rule {rule.name!r} names unknown target(s) {', '.join(map(repr, unknown))}; "
                                 f"targets: {', '.join(names) or 'none'}")
            eligible = len(rule.targets or names)
            if rule.min_registries > 1 + eligible:
                raise ValueError(f"dr rule {rule.name!r} asks for {rule.min_registries} registries, but only the "
                                 f"source and {eligible} target(s) may hold copies")
        return self

    def region_of(self, cluster: str) -> str:
        return self.cluster_regions.get(cluster, self.source_region)

    def denied_by(self, repository: str) -> str | None:
        """The pattern that keeps `repository` from being mirrored, or None if it may be."""
        for pattern in self.deny:
            if fnmatch.fnmatchcase(repository, pattern):
                return f"deny {pattern}"
        if not any(fnmatch.fnmatchcase(repository, pattern) for pattern in self.allow):
            return "no allow pattern matches"
        return None


# ------------------------------------------------------------------------------ report
class ObjectLock(_Strict):
    """S3 Object Lock on every stored report file (the bucket must have Object Lock enabled).
    COMPLIANCE: nobody, root included, can delete or shorten it; GOVERNANCE: only with
    s3:BypassGovernanceRetention."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(None, description="null: no retention is set")
    retain_days: int = Field(2557, ge=1, le=36_500, description="retention from the upload (2557 days = 7 years)")


class ReportSettings(_Strict):
    """The quarterly compliance report: where it is stored, who may download it, who is told."""

    location: str | None = Field(None, description="s3://bucket/prefix or a folder for the report bundles; "
                                                   "null: ./data/reports (or REGLIFE_REPORT_LOCATION)")
    connection_id: str = Field("aws_default", description="aws Connection with the S3 keys and endpoint_url")
    object_lock: ObjectLock = ObjectLock()
    download_url_ttl: Duration = Field(timedelta(hours=1), description="lifetime of presigned download URLs "
                                                                         "(notification and download page)")
    download_roles: list[str] = Field(default_factory=lambda: ["admin"], min_length=1,
                                      description="Airflow roles (any of, case-insensitive) allowed on the "
                                                  "download page")
    notifiers: list[AlertNotifier] = Field(default_factory=list, description="who is told that a report is ready "
                                                                             "(same kinds as forecast.alerts)")
    prod_environments: list[str] = Field(default_factory=lambda: ["prod"],
                                         description="values of gc.environment_label that count as production")
    release_tag_patterns: list[TagPattern] = Field(
        default_factory=lambda: [r"^v?\d+\.\d+\.\d+$"],
        description="regexes of tags that must never move once pushed: a re-pointed one is a finding")
    vulnerability_sla_days: int = Field(30, ge=1, le=365, description="critical/high findings with a fix must be "
                                                                      "remediated within this many days")

    @field_validator("download_url_ttl")
    @classmethod
    def _short_lived(cls, value: timedelta) -> timedelta:
        # S3 refuses presigned URLs valid for more than 7 days (SigV4); long-lived links leak.
        if not timedelta(seconds=1) <= value <= timedelta(days=7):
            raise ValueError("must be between 1s and 7d; a download link is a bearer credential, keep it short")
        return value

    @field_validator("download_roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for index, role in enumerate(value):
            if not role.strip():
                raise ValueError(f"entry [{index}] is empty; give an Airflow role name or remove the entry")
        return value

    @field_validator("notifiers")
    @classmethod
    def _unique_channels(cls, notifiers: list) -> list:
        return AlertSettings._unique_channels(notifiers)


class Policy(_Strict):
    version: Literal[1] = 1
    sources: Sources = Sources()
    validation: Validation = Validation()
    gc: GcPolicy = GcPolicy()
    forecast: ForecastSettings = ForecastSettings()
    mirror: MirrorPolicy = MirrorPolicy()
    report: ReportSettings = ReportSettings()


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file, the field and the fix."""


def _path(loc: tuple) -> str:
    """('gc', 'protected_tag_patterns', 'prod', 1) -> 'gc.protected_tag_patterns.prod[1]'."""
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_SECRET_KEYS = frozenset({"url", "webhook_url", "webhook", "token", "password", "api_key", "secret", "smtp_password"})


def _describe(error: dict) -> str:
    path = _path(error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden" and str(error["loc"][-1]).lower() in _SECRET_KEYS:
        # The value is not shown: it is most likely the secret itself.
        return (f"{path}: secrets and URLs do not belong in the policy; put them in the Airflow Connection "
                "named by connection_id")
    if kind == "extra_forbidden":
        return f"{path}: unknown setting; check the spelling against include/policies/default.yaml"
    if kind == "missing":
        return f"{path}: required setting is missing"
    message = error["msg"].removeprefix("Value error, ")
    value = error.get("input")
    if isinstance(value, dict) and _SECRET_KEYS & {str(key).lower() for key in value}:
        return f"{path}: {message} (value not shown: it holds a secret, which belongs in an Airflow Connection)"
    shown = format_duration(value) if isinstance(value, timedelta) else repr(value)
    return f"{path}: {message} (got {shown})"


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


def _deep_merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = _deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def policy_with(policy: Policy, overrides: dict) -> Policy:
    """A copy of `policy` with some settings replaced (validated like a loaded file)."""
    try:
        return Policy.model_validate(_deep_merge(policy.model_dump(), overrides))
    except ValidationError as exc:
        problems = "\n  - ".join(_describe(error) for error in exc.errors())
        raise PolicyError(f"invalid policy override\n  - {problems}") from None
