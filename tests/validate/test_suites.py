"""The rules of each dataset: every one fails when its rule is broken and passes otherwise."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import great_expectations.expectations as gxe
import pandas as pd
import pytest
from great_expectations.expectations.metadata_types import FailureSeverity

from registry_lifecycle.datasets import IMAGES, TAGS
from registry_lifecycle.validate import CRITICAL, WARNING, CheckResult
from registry_lifecycle.validate.suites import (
    VALIDATED, build_suite, check_foreign_keys, is_digest_column, validate_frames,
)

from .conftest import AS_OF, INDEX

SKEW = timedelta(hours=1)


def run(frames: dict[str, pd.DataFrame], dataset: str) -> dict[str, CheckResult]:
    """The dataset's GX results by check name (other datasets are not validated, for speed)."""
    return {check.expectation: check for check in
            validate_frames({dataset: frames[dataset]}, as_of=AS_OF, timestamp_skew=SKEW)}


def test_every_rule_passes_on_a_clean_snapshot(frames):
    results = validate_frames(frames, as_of=AS_OF, timestamp_skew=SKEW) + check_foreign_keys(frames)
    assert {check.dataset for check in results} == {dataset.name for dataset in VALIDATED}
    assert [check for check in results if not check.success] == []


@dataclass(frozen=True)
class Breakage:
    dataset: str
    mutate: Callable[[dict[str, pd.DataFrame]], None]
    check: str
    severity: str
    observed: str


def _set(dataset: str, column: str, value: object, row: int = 0) -> Callable[[dict[str, pd.DataFrame]], None]:
    def mutate(frames: dict[str, pd.DataFrame]) -> None:
        frames[dataset].loc[row, column] = value
    return mutate


def _duplicate_first_row(dataset: str) -> Callable[[dict[str, pd.DataFrame]], None]:
    def mutate(frames: dict[str, pd.DataFrame]) -> None:
        frames[dataset] = pd.concat([frames[dataset], frames[dataset].iloc[[0]]], ignore_index=True)
    return mutate


BREAKAGES = {
    "tag digest not sha256": Breakage("tags", _set("tags", "digest", "sha256:NOTHEX"),
                                      "digest is a sha256 digest", CRITICAL, "sha256:NOTHEX"),
    "config digest is a tag": Breakage("images", _set("images", "config_digest", "latest", row=1),
                                       "config_digest is a sha256 digest", CRITICAL, "e.g. latest"),
    "null key": Breakage("tags", _set("tags", "namespace", None), "namespace not null", CRITICAL,
                         "1 of 3 rows are null"),
    "duplicate compound key": Breakage("tags", _set("tags", "revision", 0, row=1),
                                       "key unique (namespace, imagestream, tag, revision)", CRITICAL,
                                       "2 of 3 rows share their key"),
    "duplicate image digest": Breakage("images", _duplicate_first_row("images"), "key unique (digest)",
                                       CRITICAL, f"e.g. {INDEX}"),
    "negative layer size": Breakage("layers", _set("layers", "size_bytes", -1), "size_bytes >= 0", CRITICAL,
                                    "1 of 5 rows are negative, e.g. -1"),
    "negative pulls": Breakage("pulls_daily", _set("pulls_daily", "pulls", -3), "pulls >= 0", CRITICAL,
                               "e.g. -3"),
    "tag created in the future": Breakage("tags", _set("tags", "created_at", AS_OF + timedelta(hours=2)),
                                          "created_at within 2000-01-01 .. as-of + skew", CRITICAL,
                                          "after 2026-03-10T07:00:00+00:00"),
    "reference observed before 2000": Breakage(
        "references", _set("references", "observed_at", datetime(1999, 12, 31, tzinfo=timezone.utc)),
        "observed_at within 2000-01-01 .. as-of + skew", CRITICAL, "1999-12-31"),
    "pulls counted for a future day": Breakage("pulls_daily", _set("pulls_daily", "day", date(2026, 3, 12)),
                                               "day within 2000-01-01 .. as-of + skew", CRITICAL, "2026-03-12"),
    "reproducible build epoch only warns": Breakage(
        "images", _set("images", "created_at", datetime(1970, 1, 1, tzinfo=timezone.utc), row=1),
        "created_at within 2000-01-01 .. as-of + skew", WARNING, "1970-01-01"),
    "severity outside Trivy's set": Breakage("scans", _set("scans", "severity", "SEVERE"),
                                             "severity is a Trivy severity", CRITICAL, "e.g. SEVERE"),
    "unknown manifest media type": Breakage("images", _set("images", "media_type", "application/x-tar"),
                                            "media_type is a known manifest type", WARNING, "application/x-tar"),
}


@pytest.mark.parametrize("breakage", BREAKAGES.values(), ids=BREAKAGES.keys())
def test_a_broken_rule_fails_with_its_severity_and_the_offending_value(frames, breakage: Breakage):
    assert run(frames, breakage.dataset)[breakage.check].success, "the clean snapshot must pass this rule"
    breakage.mutate(frames)
    results = run(frames, breakage.dataset)
    failed = results[breakage.check]
    assert not failed.success
    assert failed.severity == breakage.severity
    assert breakage.observed in failed.observed
    assert failed.hint
    assert [name for name, check in results.items() if not check.success] == [breakage.check]


def test_a_timestamp_within_the_clock_skew_passes(frames):
    frames["tags"].loc[0, "created_at"] = AS_OF + SKEW - timedelta(minutes=1)
    assert run(frames, "tags")["created_at within 2000-01-01 .. as-of + skew"].success


def test_a_null_in_a_nullable_digest_column_is_not_a_format_error(frames):
    assert frames["images"]["config_digest"].isna().any()
    assert run(frames, "images")["config_digest is a sha256 digest"].success


def test_columns_may_come_in_any_order(frames):
    frames["tags"] = frames["tags"][list(reversed(frames["tags"].columns))]
    assert run(frames, "tags")["columns match contract"].success


def test_a_missing_and_an_extra_column_are_both_named(frames):
    frames["images"] = frames["images"].drop(columns="labels").assign(tag="latest")
    check = run(frames, "images")["columns match contract"]
    assert not check.success and check.severity == CRITICAL
    assert "missing: labels" in check.observed and "not in the contract: tag" in check.observed


def test_a_check_on_a_missing_column_fails_instead_of_passing(frames):
    frames["tags"] = frames["tags"].drop(columns="digest")
    check = run(frames, "tags")["digest is a sha256 digest"]
    assert not check.success and check.observed.startswith("could not evaluate")


def test_suites_follow_the_contract():
    suite = build_suite(TAGS, as_of=AS_OF, timestamp_skew=SKEW)
    by_type = {type(expectation): expectation for expectation in suite.expectations}
    assert set(by_type[gxe.ExpectTableColumnsToMatchSet].column_set) == set(TAGS.schema.names)
    assert by_type[gxe.ExpectCompoundColumnsToBeUnique].column_list == list(TAGS.key)
    images = build_suite(IMAGES, as_of=AS_OF, timestamp_skew=SKEW)
    regex_columns = {e.column for e in images.expectations if isinstance(e, gxe.ExpectColumnValuesToMatchRegex)}
    assert regex_columns == {name for name in IMAGES.schema.names if is_digest_column(name)}
    assert {e.severity for e in images.expectations} == {FailureSeverity.CRITICAL, FailureSeverity.WARNING}


@pytest.mark.parametrize("dataset", VALIDATED, ids=lambda dataset: dataset.name)
def test_check_names_are_unique_within_a_dataset(dataset):
    """(dataset, expectation, run_id) is the key of the validation dataset."""
    names = [e.meta["check"] for e in build_suite(dataset, as_of=AS_OF, timestamp_skew=SKEW).expectations]
    assert len(names) == len(set(names))


def test_a_naive_as_of_is_refused():
    with pytest.raises(ValueError, match="time zone"):
        build_suite(TAGS, as_of=AS_OF.replace(tzinfo=None), timestamp_skew=SKEW)


# --------------------------------------------------------------------------- references between datasets
def foreign_keys(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, str], CheckResult]:
    return {(check.dataset, check.expectation): check for check in check_foreign_keys(frames)}


def test_every_reference_resolves_on_a_clean_snapshot(frames):
    results = foreign_keys(frames)
    assert set(results) == {("tags", "digest in images.digest"), ("layers", "image_digest in images.digest"),
                            ("images", "index_digest in images.digest"),
                            ("index_children", "child_digest in images.digest"),
                            ("images", "subject_digest in images.digest")}
    assert all(check.success for check in results.values())


def test_a_dangling_tag_digest_fails_critically_and_shows_it(frames):
    dangling = "sha256:" + "ab" * 32
    frames["tags"].loc[2, "digest"] = dangling
    check = foreign_keys(frames)[("tags", "digest in images.digest")]
    assert not check.success and check.severity == CRITICAL
    assert check.observed == "1 of 3 values not in images.digest, e.g. sha256:abababababab…"
    assert "same cluster" in check.hint


def test_a_layer_of_an_unknown_image_fails_critically(frames):
    frames["layers"].loc[4, "image_digest"] = "sha256:" + "cd" * 32
    check = foreign_keys(frames)[("layers", "image_digest in images.digest")]
    assert not check.success and check.severity == CRITICAL
    assert "1 of 5 values not in images.digest" in check.observed


def test_a_child_of_a_missing_index_fails_critically(frames):
    frames["images"].loc[1, "index_digest"] = "sha256:" + "ef" * 32
    check = foreign_keys(frames)[("images", "index_digest in images.digest")]
    assert not check.success and check.severity == CRITICAL


def test_an_orphaned_signature_only_warns(frames):
    """Referrers outlive a subject deleted without them: a GC candidate, not an extraction error."""
    frames["images"].loc[3, "subject_digest"] = "sha256:" + "01" * 32
    check = foreign_keys(frames)[("images", "subject_digest in images.digest")]
    assert not check.success and check.severity == WARNING


def test_a_reference_to_an_absent_dataset_is_recorded_as_unverifiable(frames):
    del frames["images"]
    results = foreign_keys(frames)
    check = results[("tags", "digest in images.digest")]
    assert not check.success and check.severity == WARNING and "images is not in this run" in check.observed
    assert ("images", "index_digest in images.digest") not in results
