"""The policy file: the default loads, and every mistake is refused with the field it is about."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from registry_lifecycle.config import DEFAULT_POLICY, PolicyError, load_policy


def load_text(tmp_path: Path, text: str):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_policy(path)


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(PolicyError) as error:
        load_text(tmp_path, text)
    return str(error.value)


def test_the_packaged_default_loads_with_the_documented_gc_settings():
    gc = load_policy(DEFAULT_POLICY).gc
    assert (gc.horizon_days, gc.threshold, gc.keep_tag_revisions) == (90, 0.02, 3)
    assert gc.keep_younger_than == timedelta(minutes=60)
    assert gc.protected_tag_patterns["prod"] == [r"^v?\d+\.\d+\.\d+$", "^prod$", "^stable$"]
    assert gc.legal_hold_annotation == "registry-lifecycle/legal-hold"
    assert gc.dr_label == ("dr", "true")
    assert (gc.caps.max_images, gc.caps.max_bytes) == (2000, 2 * 2**40)
    assert gc.circuit_breaker.max_errors == 5
    assert gc.approval.channel == "airflow"
    assert (gc.approval.response_timeout, gc.approval.plan_max_age) == (timedelta(hours=24), timedelta(hours=48))
    assert gc.approval.approvals_namespace == "registry-lifecycle-approvals"
    assert gc.mode_for("team-a-prod", "prod") == "approve"


def test_the_default_file_documents_every_gc_setting():
    text = DEFAULT_POLICY.read_text()
    gc = load_policy(DEFAULT_POLICY).gc
    for name in type(gc).model_fields:
        assert f"  {name}:" in text, f"gc.{name} is not spelled out in {DEFAULT_POLICY.name}"


def test_an_unknown_key_is_refused_by_name(tmp_path):
    message = refusal(tmp_path, "gc:\n  keep_tag_revison: 5\n")
    assert "gc.keep_tag_revison: unknown setting" in message


def test_a_bad_regex_names_the_pattern_and_the_regex_error(tmp_path):
    message = refusal(tmp_path, "gc:\n  protected_tag_patterns:\n    prod: ['^prod$', '(v1']\n")
    assert "gc.protected_tag_patterns.prod[1]: not a valid regular expression" in message
    assert "missing )" in message


def test_a_negative_threshold_is_refused(tmp_path):
    message = refusal(tmp_path, "gc:\n  threshold: -0.1\n")
    assert "gc.threshold: Input should be greater than or equal to 0 (got -0.1)" in message


def test_a_bad_duration_says_how_to_write_one(tmp_path):
    message = refusal(tmp_path, "gc:\n  keep_younger_than: 60 minutes\n")
    assert "gc.keep_younger_than: '60 minutes' is not a duration" in message
    assert "e.g. 60m" in message


def test_broken_yaml_reports_line_and_column(tmp_path):
    message = refusal(tmp_path, "gc:\n  threshold: 0.02\n   caps: {max_images: 5}\n")
    assert "at line 3, column 8: not valid YAML" in message


def test_a_plan_must_outlive_its_approval_window(tmp_path):
    message = refusal(tmp_path, "gc:\n  approval:\n    response_timeout: 72h\n")
    assert "gc.approval.plan_max_age: must be at least response_timeout (3d)" in message


def test_a_mode_rule_must_say_what_it_matches(tmp_path):
    message = refusal(tmp_path, "gc:\n  modes:\n    - match: {}\n      mode: auto\n")
    assert "gc.modes[0].match: give env and/or namespace" in message


def test_mode_rules_match_in_order_with_globs(tmp_path):
    gc = load_text(tmp_path, "gc:\n  modes:\n"
                             "    - {match: {env: prod}, mode: audit}\n"
                             "    - {match: {namespace: 'team-*-dev'}, mode: auto}\n").gc
    assert gc.mode_for("team-a-prod", "prod") == "audit"
    assert gc.mode_for("team-a-dev", "dev") == "auto"
    assert gc.mode_for("team-a-staging", "staging") == "approve"


def test_sizes_labels_and_annotations_are_checked(tmp_path):
    assert load_text(tmp_path, "gc:\n  caps: {max_bytes: 500GiB}\n").gc.caps.max_bytes == 500 * 2**30
    assert "gc.caps.max_bytes" in refusal(tmp_path, "gc:\n  caps: {max_bytes: lots}\n")
    assert "gc.dr_namespace_label: write one label as key=value" in refusal(tmp_path, "gc:\n  dr_namespace_label: dr\n")
    assert "gc.legal_hold_annotation" in refusal(tmp_path, "gc:\n  legal_hold_annotation: 'legal hold'\n")
