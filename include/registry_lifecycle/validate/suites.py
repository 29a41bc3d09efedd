"""The rules every dataset of a snapshot must satisfy, as Great Expectations suites.

Each suite is derived from the dataset's contract in `registry_lifecycle.datasets` (its
columns, key and types), so a contract change changes the suite with it. The lake already
refuses frames whose types or nullability break the contract (`LakeSchemaError`); these rules
are what a schema cannot say: keys that identify rows, digests that are content addresses,
sizes and times that make sense, vocabularies the later stages rely on, and references
between datasets that must resolve.

Every rule has a severity: `critical` fails the gate, `warning` is recorded and shown. The
severity is Great Expectations' own `Expectation.severity`, so the suites read the same in
any GX tooling. Rules stay few and column-wise on purpose: GX's fixed cost per expectation
is what dominates on a million rows.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, cast

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..datasets import (DIGEST_PATTERN, BUILDS, IMAGE_OBJECTS, IMAGES, INDEX_CHILDREN, LAYERS, NAMESPACES,
                        PULLS_DAILY, REFERENCES, SCANS, STORAGE_USAGE, TAGS, Dataset)
from . import CRITICAL, WARNING, CheckResult, Severity

# GX logs at INFO while it imports (its docs decorators) and at DEBUG for every renderer it
# registers: noise in every Airflow task log. Quieten it before the import, unless someone
# configured the logger on purpose to debug GX itself.
_gx_logger = logging.getLogger("great_expectations")
if _gx_logger.level == logging.NOTSET:
    _gx_logger.setLevel(logging.WARNING)

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.core.expectation_validation_result import ExpectationValidationResult  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig,
)
from great_expectations.expectations.metadata_types import FailureSeverity  # noqa: E402

VALIDATED: tuple[Dataset, ...] = (IMAGES, LAYERS, INDEX_CHILDREN, TAGS, REFERENCES, PULLS_DAILY, SCANS,
                                  STORAGE_USAGE, BUILDS, NAMESPACES, IMAGE_OBJECTS)
"""The datasets an extraction produces, in the order the gate reports them."""

TRIVY_SEVERITIES = ("UNKNOWN", "LOW", "MEDIUM", "HIGH", "CRITICAL")

MANIFEST_MEDIA_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    # Schema 1 is deprecated, but long-lived registries still store manifests pushed in that format.
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    # Withdrawn before OCI 1.1 was released, but stored by registries that accepted the release candidates.
    "application/vnd.oci.artifact.manifest.v1+json",
)

EARLIEST_PLAUSIBLE = datetime(2000, 1, 1, tzinfo=timezone.utc)
"""No registry content predates this; earlier values are unset fields or the Unix epoch."""

NON_NEGATIVE_COLUMNS = frozenset({"size_bytes", "bytes", "used_bytes", "capacity_bytes", "pulls"})

BUILDER_CLOCK_COLUMNS = frozenset({("images", "created_at")})
"""Timestamps written by whoever built the image, not observed by us: reproducible builds
stamp 1970-01-01 on purpose, so an implausible value there warns instead of halting."""

_RESULT_FORMAT = {"result_format": "BASIC", "partial_unexpected_count": 3}
_EXAMPLE_LENGTH = 80


def is_digest_column(column: str) -> bool:
    """Columns that hold a content digest, by the contracts' naming convention."""
    return column == "digest" or column.endswith("_digest")


def _short_digest(value: str) -> str:
    return value[:19] + "…" if value.startswith("sha256:") and len(value) > 19 else value


def _example(value: Any) -> str:
    """One offending value as a reader can scan it in a log line."""
    if isinstance(value, Mapping):
        return "(" + ", ".join(f"{key}={_example(item)}" for key, item in value.items()) + ")"
    text = value.isoformat() if isinstance(value, (datetime, pd.Timestamp)) else str(value)
    return text if len(text) <= _EXAMPLE_LENGTH else text[:_EXAMPLE_LENGTH - 1] + "…"


def _examples(values: list[Any]) -> str:
    """Distinct, non-null sample values; nulls say nothing a count has not said already."""
    shown: dict[str, None] = {}
    for value in values:
        if isinstance(value, Mapping) or not pd.isna(value):
            shown.setdefault(_example(value))
    return f", e.g. {', '.join(shown)}" if shown else ""


# --------------------------------------------------------------------------- rules per dataset
def _rule(expectation: type[gxe.Expectation], name: str, severity: Severity, violation: str, hint: str,
          **kwargs: Any) -> gxe.Expectation:
    """An expectation carrying the name, wording and advice the gate reports for it."""
    return expectation(**kwargs, severity=FailureSeverity(severity),
                       meta={"check": name, "violation": violation, "hint": hint})


def _rules(dataset: Dataset, *, as_of: datetime, timestamp_skew: timedelta) -> Iterator[gxe.Expectation]:
    schema = dataset.schema
    yield _rule(
        gxe.ExpectTableColumnsToMatchSet, "columns match contract", CRITICAL, "",
        "the extractor and the contract in registry_lifecycle/datasets.py disagree — usually a source "
        "API renamed a field; fix the extractor (or change the contract and bump SCHEMA_VERSION)",
        column_set=list(schema.names), exact_match=True)

    for column in dataset.key:
        if not schema.field(column).nullable:
            yield _rule(
                gxe.ExpectColumnValuesToNotBeNull, f"{column} not null", CRITICAL, "are null",
                "a key must identify its row; a null key means the source answered without the field "
                "(an API version change or a partial object) — check this dataset's extractor",
                column=column)

    unique_hint = ("duplicate keys mean a list was read twice (a replayed `continue` token, a `Link` page "
                   "followed twice) or two sources were merged — re-run the extraction; if it persists, "
                   "check the source's paging")
    key_name = f"key unique ({', '.join(dataset.key)})"
    if len(dataset.key) == 1:
        yield _rule(gxe.ExpectColumnValuesToBeUnique, key_name, CRITICAL, "share their key with another row",
                    unique_hint, column=dataset.key[0])
    else:
        yield _rule(gxe.ExpectCompoundColumnsToBeUnique, key_name, CRITICAL, "share their key with another row",
                    unique_hint, column_list=list(dataset.key))

    latest = as_of + timestamp_skew
    for schema_field in schema:
        column = schema_field.name
        if is_digest_column(column):
            # Nulls are not judged here: GX column-map expectations skip missing values, and
            # whether a digest may be missing is the contract's nullability, which the lake enforces.
            yield _rule(
                gxe.ExpectColumnValuesToMatchRegex, f"{column} is a sha256 digest", CRITICAL,
                "are not sha256:<64 lowercase hex> digests",
                "digests are content addresses; anything else is a tag, a truncated or upper-case digest, "
                "or another algorithm that cannot be matched against blobs — fix the extractor",
                column=column, regex=DIGEST_PATTERN)
        if column in NON_NEGATIVE_COLUMNS:
            yield _rule(
                gxe.ExpectColumnValuesToBeBetween, f"{column} >= 0", CRITICAL, "are negative",
                "a negative size or count is a parse error in the source (an overflow, or -1 standing "
                "for unknown) — fix the source, not the data",
                column=column, min_value=0)
        if pa.types.is_timestamp(schema_field.type) or pa.types.is_date(schema_field.type):
            yield _timestamp_rule(dataset, column, schema_field.type, latest, timestamp_skew)

    if dataset is SCANS:
        yield _rule(
            gxe.ExpectColumnValuesToBeInSet, "severity is a Trivy severity", CRITICAL,
            f"are not one of {', '.join(TRIVY_SEVERITIES)}",
            "vulnerability triage counts by these five levels; the scans source must map every "
            "scanner's severities onto them",
            column="severity", value_set=list(TRIVY_SEVERITIES))
    if dataset is IMAGES:
        yield _rule(
            gxe.ExpectColumnValuesToBeInSet, "media_type is a known manifest type", WARNING,
            "are not known OCI/Docker manifest media types",
            "check which tool pushed these manifests and whether their references (layers, subject, "
            "index children) were extracted; add the type here once the extractor understands it",
            column="media_type", value_set=list(MANIFEST_MEDIA_TYPES))


def _timestamp_rule(dataset: Dataset, column: str, arrow_type: pa.DataType, latest: datetime,
                    timestamp_skew: timedelta) -> gxe.Expectation:
    """Times after the run (beyond the allowed clock skew) or before 2000 are broken data."""
    low: date = EARLIEST_PLAUSIBLE
    high: date = latest
    if pa.types.is_date(arrow_type):
        low, high = EARLIEST_PLAUSIBLE.date(), latest.date()
    if (dataset.name, column) in BUILDER_CLOCK_COLUMNS:
        severity: Severity = WARNING
        hint = ("image configs carry the builder's clock: reproducible builds stamp 1970-01-01 on purpose, "
                "and a date in the future is a build host with a wrong clock — nothing to re-extract")
    else:
        severity = CRITICAL
        hint = (f"check the clocks of the extraction host and of the cluster (allowed skew {timestamp_skew}) "
                "and that the source reports UTC; a value before 2000 is an unset field read as the epoch")
    return _rule(
        gxe.ExpectColumnValuesToBeBetween, f"{column} within 2000-01-01 .. as-of + skew", severity,
        f"are before {low.isoformat()} or after {high.isoformat()}", hint,
        column=column, min_value=low, max_value=high)


def build_suite(dataset: Dataset, *, as_of: datetime, timestamp_skew: timedelta) -> gx.ExpectationSuite:
    """The GX suite for one dataset of a snapshot taken at `as_of` (timezone-aware)."""
    if as_of.tzinfo is None:
        raise ValueError(f"as_of {as_of.isoformat()} has no time zone; pass an aware datetime, "
                         "e.g. datetime.now(timezone.utc)")
    suite = gx.ExpectationSuite(name=dataset.name)
    for expectation in _rules(dataset, as_of=as_of, timestamp_skew=timestamp_skew):
        suite.add_expectation(expectation)
    return suite


# --------------------------------------------------------------------------- running the suites
def validate_frames(frames: Mapping[str, pd.DataFrame], *, as_of: datetime,
                    timestamp_skew: timedelta) -> list[CheckResult]:
    """Run the suite of every dataset in `frames` and return one result per expectation.

    One ephemeral GX context per call: nothing is written to disk and no state leaks between
    runs. The frame is handed to GX as a whole-dataframe batch, the documented GX 1.x path for
    data that is already in memory.
    """
    context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
        # No Data Docs site: nothing here renders HTML, and GX's default allots a temp dir for it.
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        # tqdm progress bars would land in every Airflow task log as carriage-return noise.
        progress_bars=ProgressBarsConfig(globally=False)))
    datasource = context.data_sources.add_pandas("snapshot")
    results: list[CheckResult] = []
    for dataset in VALIDATED:
        if dataset.name not in frames:
            continue
        suite = build_suite(dataset, as_of=as_of, timestamp_skew=timestamp_skew)
        batch_definition = datasource.add_dataframe_asset(dataset.name).add_batch_definition_whole_dataframe(
            dataset.name)
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frames[dataset.name]})
        outcome = batch.validate(suite, result_format=_RESULT_FORMAT)
        order = {expectation.meta["check"]: i for i, expectation in enumerate(suite.expectations)}
        checks = [_check_result(dataset, result) for result in outcome.results]
        results.extend(sorted(checks, key=lambda check: order[check.expectation]))
    return results


def _check_result(dataset: Dataset, result: ExpectationValidationResult) -> CheckResult:
    """A GX result in the `validation` contract's terms, with a sentence a person can act on."""
    config = result.expectation_config
    meta = config.meta
    severity = cast(Severity, FailureSeverity(config.severity).value)
    return CheckResult(dataset.name, meta["check"], severity, bool(result.success),
                       _observed(dataset, result, meta["violation"]), meta["hint"])


def _observed(dataset: Dataset, result: ExpectationValidationResult, violation: str) -> str:
    details = result.result or {}
    error = _exception_message(result.exception_info or {})
    if error is not None:
        return f"could not evaluate: {error}"
    if result.expectation_config.type == "expect_table_columns_to_match_set":
        mismatched = details.get("details", {}).get("mismatched", {})
        if result.success:
            return f"{len(dataset.schema.names)} columns as in the contract"
        parts = [f"{label}: {', '.join(map(str, mismatched[key]))}"
                 for key, label in (("missing", "missing"), ("unexpected", "not in the contract"))
                 if mismatched.get(key)]
        return "; ".join(parts) or f"columns {details.get('observed_value')}"
    total = int(details.get("element_count", 0))
    unexpected = int(details.get("unexpected_count", 0))
    if result.success:
        return f"{total:,} rows checked"
    return f"{unexpected:,} of {total:,} rows {violation}{_examples(details.get('partial_unexpected_list', []))}"


def _exception_message(exception_info: Mapping[str, Any]) -> str | None:
    """The error GX caught while evaluating an expectation, if any.

    A single expectation reports it flat; inside a suite GX keys it by the metric that
    raised, so both shapes are read.
    """
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message"))
    for info in exception_info.values():
        if isinstance(info, Mapping) and info.get("raised_exception"):
            return str(info.get("exception_message"))
    return None


# --------------------------------------------------------------------------- references between datasets
@dataclass(frozen=True)
class ForeignKey:
    """Values of `dataset.column` that must exist in `target.target_column`."""

    dataset: str
    column: str
    target: str
    target_column: str
    severity: Severity
    hint: str

    @property
    def name(self) -> str:
        """The check's name in the `validation` dataset, e.g. "digest in images.digest"."""
        return f"{self.column} in {self.target}.{self.target_column}"


# GX has no expectation across two tables. ExpectColumnValuesToBeInSet with the other table's
# values as its value_set works but is unusable at scale: GX re-serialises the value_set for
# every metric it plans, so 300,000 image digests turned a 4 s validation of 1,000,000 tags into
# 48 s. These are therefore vectorised membership tests (pyarrow `is_in`), reported in the same
# CheckResult form as the suites.
FOREIGN_KEYS: tuple[ForeignKey, ...] = (
    ForeignKey(TAGS.name, "digest", IMAGES.name, "digest", CRITICAL,
               "the registry and the cluster disagree — re-run the extraction; if it persists, check that "
               "the registry source and the openshift source point at the same cluster"),
    ForeignKey(LAYERS.name, "image_digest", IMAGES.name, "digest", CRITICAL,
               "layers were read for manifests the image listing does not hold, so the two reads were not "
               "of the same registry state — re-run the extraction"),
    ForeignKey(IMAGES.name, "index_digest", IMAGES.name, "digest", CRITICAL,
               "a multi-arch child names an index the snapshot lacks; children of a kept index must be kept, "
               "so the GC cannot decide about them — re-run the extraction"),
    ForeignKey(INDEX_CHILDREN.name, "child_digest", IMAGES.name, "digest", CRITICAL,
               "an index lists a child the image listing does not hold — re-run the extraction"),
    ForeignKey(IMAGES.name, "subject_digest", IMAGES.name, "digest", WARNING,
               "signatures, SBOMs or attestations whose subject image is gone: orphans left when an image "
               "was deleted without its referrers — GC candidates, not an extraction error"),
)


def _is_in(values: pd.Series, allowed: pd.Series) -> np.ndarray:
    """Which of `values` occur in `allowed`, as a boolean mask.

    pyarrow's hash lookup rather than `Series.isin`: pandas 3 builds a Python scalar for every
    allowed value of an Arrow-backed string column, which took 12 s for 300,000 digests.
    """
    values_array = pa.array(values, from_pandas=True)
    allowed_array = pa.array(allowed, from_pandas=True).cast(values_array.type)
    return pc.is_in(values_array, value_set=allowed_array).to_numpy(zero_copy_only=False)


def check_foreign_keys(frames: Mapping[str, pd.DataFrame]) -> list[CheckResult]:
    """Every reference between datasets resolves, for the datasets present in `frames`.

    A referencing dataset that is absent is skipped here (the gate records its absence once);
    a referenced dataset that is absent makes the check unverifiable, which is a warning.
    """
    return [_check_foreign_key(key, frames) for key in FOREIGN_KEYS if key.dataset in frames]


def _check_foreign_key(key: ForeignKey, frames: Mapping[str, pd.DataFrame]) -> CheckResult:
    if key.target not in frames:
        return CheckResult(key.dataset, key.name, WARNING, False,
                           f"not checked: {key.target} is not in this run",
                           f"validate {key.dataset} together with {key.target}")
    frame, target = frames[key.dataset], frames[key.target]
    for name, table, column in ((key.dataset, frame, key.column), (key.target, target, key.target_column)):
        if column not in table.columns:
            return CheckResult(key.dataset, key.name, key.severity, False,
                               f"could not evaluate: {name} has no column {column}", key.hint)
    values = frame[key.column].dropna()
    try:
        dangling = values[~_is_in(values, target[key.target_column].dropna())]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        return CheckResult(key.dataset, key.name, key.severity, False, f"could not evaluate: {error}", key.hint)
    if dangling.empty:
        return CheckResult(key.dataset, key.name, key.severity, True,
                           f"all {len(values):,} values found in {key.target}.{key.target_column}", key.hint)
    examples = ", ".join(_short_digest(str(value)) for value in dangling.drop_duplicates().head(3))
    return CheckResult(
        key.dataset, key.name, key.severity, False,
        f"{len(dangling):,} of {len(values):,} values not in {key.target}.{key.target_column}, e.g. {examples}",
        key.hint)
