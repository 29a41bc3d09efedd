"""The gate: one decision per snapshot, a `validation` row per check, and messages that say what to do."""
from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
import pytest

from registry_lifecycle.config import Validation
from registry_lifecycle.datasets import VALIDATION
from registry_lifecycle.lake import Lake
from registry_lifecycle.validate.gate import (
    PRESENT, DataQualityError, GateResult, GateThresholds, run_quality_gate,
)
from registry_lifecycle.validate.suites import VALIDATED
from registry_lifecycle.validate.volume import VolumeThresholds

from .conftest import AS_OF

RUN_ID = "manual__2026-03-10T06:00:00+00:00"
PREVIOUS_RUN = "scheduled__2026-03-09T00:00:00+00:00"
DEFAULTS = GateThresholds()


def gate(frames, *, previous_counts=None, thresholds=DEFAULTS, previous_run=PREVIOUS_RUN,
         required=()) -> GateResult:
    return run_quality_gate(frames, as_of=AS_OF, run_id=RUN_ID, previous_counts=previous_counts,
                            thresholds=thresholds, previous_run=previous_run, required=required)


def counts(frames) -> dict[str, int]:
    return {name: len(frame) for name, frame in frames.items()}


def test_a_clean_snapshot_passes(frames):
    result = gate(frames, previous_counts=counts(frames))
    assert result.passed
    assert result.failures == () and result.warnings == ()
    result.raise_for_failures()
    assert {check.dataset for check in result.checks} == {dataset.name for dataset in VALIDATED}


def test_results_are_rows_of_the_validation_contract(frames, tmp_path):
    results = gate(frames).results
    assert list(results.columns) == VALIDATION.schema.names
    table = pa.Table.from_pandas(results, schema=VALIDATION.schema, preserve_index=False)
    for schema_field in VALIDATION.schema:
        if not schema_field.nullable:
            assert table.column(schema_field.name).null_count == 0, schema_field.name
    assert not results.duplicated(list(VALIDATION.key)).any()
    assert set(results.run_id) == {RUN_ID}
    assert set(results.severity) <= {"critical", "warning", "info"}
    # The lake checks kinds of values strictly (no 0/1 for booleans, no numbers for text).
    Lake(tmp_path / "lake").write(VALIDATION, AS_OF.date(), RUN_ID, results)


def test_a_missing_dataset_is_recorded_as_skipped_not_passed_over(frames):
    del frames["builds"]
    result = gate(frames)
    builds = [check for check in result.checks if check.dataset == "builds"]
    assert [(check.expectation, check.success, check.severity) for check in builds] == [(PRESENT, False, "warning")]
    assert "skipped" in builds[0].observed
    assert result.passed and builds[0] in result.warnings
    assert "| WARN | builds | present in run |" in result.summary_markdown()


def test_a_missing_required_dataset_halts(frames):
    """A daily run must not publish a snapshot that lacks, say, the references of every workload."""
    del frames["references"]
    result = gate(frames, required=("images", "tags", "references", "builds"))
    presence = {check.dataset: check for check in result.checks if check.expectation == PRESENT}
    assert not presence["references"].success and presence["references"].is_failure
    assert presence["images"].success and presence["images"].severity == "critical"
    assert presence["scans"].severity == "warning"
    message = str(pytest.raises(DataQualityError, result.raise_for_failures).value)
    assert "references.present in run: missing from this run" in message


def test_a_dangling_tag_digest_halts_with_the_value_and_what_to_do(frames):
    frames["tags"].loc[2, "digest"] = "sha256:" + "ab" * 32
    result = gate(frames)
    assert not result.passed
    with pytest.raises(DataQualityError) as raised:
        result.raise_for_failures()
    message = str(raised.value)
    assert ("tags.digest in images.digest: 1 of 3 values not in images.digest, e.g. sha256:abababababab…; "
            "the registry and the cluster disagree") in message
    assert "point at the same cluster" in message
    assert raised.value.failures == result.failures


def test_every_failed_critical_check_is_listed_with_its_observed_value(frames):
    frames["layers"].loc[0, "size_bytes"] = -5
    frames["scans"].loc[1, "severity"] = "SEVERE"
    result = gate(frames)
    assert {(check.dataset, check.expectation) for check in result.failures} == {
        ("layers", "size_bytes >= 0"), ("scans", "severity is a Trivy severity")}
    message = str(pytest.raises(DataQualityError, result.raise_for_failures).value)
    assert "2 critical checks failed" in message
    assert "layers.size_bytes >= 0: 1 of 5 rows are negative, e.g. -5" in message
    assert "scans.severity is a Trivy severity: 1 of 2 rows are not one of" in message and "SEVERE" in message


def test_a_warning_is_shown_but_does_not_halt(frames):
    frames["images"].loc[1, "created_at"] = datetime(1970, 1, 1, tzinfo=timezone.utc)
    result = gate(frames)
    assert result.passed
    assert [(check.dataset, check.expectation) for check in result.warnings] == [
        ("images", "created_at within 2000-01-01 .. as-of + skew")]
    result.raise_for_failures()
    assert "| WARN | images | created_at within" in result.summary_markdown()


def test_a_halved_snapshot_halts_naming_the_counts_the_previous_run_and_the_override(frames):
    previous = counts(frames) | {"images": 2 * len(frames["images"])}
    result = gate(frames, previous_counts=previous)
    message = str(pytest.raises(DataQualityError, result.raise_for_failures).value)
    assert "images.row count shrink vs previous snapshot: 5 rows, down 50% from 10" in message
    assert PREVIOUS_RUN in message
    assert "--accept-shrink" in message and "validation.max_shrink.images" in message


def test_accept_shrink_lets_the_halved_snapshot_through_with_a_warning(frames):
    previous = counts(frames) | {"images": 2 * len(frames["images"])}
    result = gate(frames, previous_counts=previous,
                  thresholds=GateThresholds(volume=VolumeThresholds(accept_shrink=True)))
    assert result.passed
    assert [check.expectation for check in result.warnings] == ["row count shrink vs previous snapshot"]


def test_thresholds_come_from_the_policy():
    thresholds = GateThresholds.from_policy(Validation(max_shrink={"images": 0.6}), accept_shrink=True)
    assert thresholds.volume.shrink_limit("images") == 0.6
    assert thresholds.volume.accept_shrink
    assert thresholds.timestamp_skew == Validation().timestamp_skew


def test_the_summary_lists_problems_first(frames):
    frames["tags"].loc[0, "namespace"] = None
    summary = gate(frames).summary_markdown()
    assert summary.startswith("### Data-quality gate FAILED")
    table = [line for line in summary.splitlines() if line.startswith("| ")]
    assert table[0] == "| result | dataset | check | severity | observed |"
    assert table[1].startswith("| FAIL | tags | namespace not null | critical | 1 of 3 rows are null")
    assert "What to do:" in summary


def test_an_unknown_dataset_is_refused(frames):
    with pytest.raises(ValueError, match="no rules for gc_scores"):
        gate(frames | {"gc_scores": frames["images"]})
    with pytest.raises(ValueError, match="no rules for image"):
        gate(frames, required=("image",))


def test_a_naive_as_of_is_refused(frames):
    with pytest.raises(ValueError, match="time zone"):
        run_quality_gate(frames, as_of=AS_OF.replace(tzinfo=None), run_id=RUN_ID, previous_counts=None)
