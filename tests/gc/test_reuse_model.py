"""The reuse model: labels from the stored future, calibration, fallback, reasons."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from registry_lifecycle.config import GcPolicy
from registry_lifecycle.gc.features import MODEL_FEATURES, build_features
from registry_lifecycle.gc import reuse_model
from registry_lifecycle.gc.reuse_model import (FALLBACK_PRIOR, MIN_LABELLED_DATES, WARM_UP_DAYS, ExampleSet,
                                               calibration_table, fit_reuse_model, labelled_days, reasons,
                                               reused_after, safety_floor, train)

HORIZON = 30


@pytest.fixture(scope="module")
def examples(sandbox_history) -> ExampleSet:
    return ExampleSet(sandbox_history.history, HORIZON, safety_floor(GcPolicy()))


def test_labels_are_what_happened_within_the_stored_horizon(sandbox_history, examples):
    history = sandbox_history.history
    day = labelled_days(history, HORIZON, history.pulls.last_day)[0]
    labelled = examples.day(day)
    assert len(labelled) and labelled["reused"].any() and not labelled["reused"].all()
    after = history.pulls.between(day, day + timedelta(days=HORIZON))
    pulled = set(after["digest"].astype(object))
    assert labelled.index[labelled["reused"]].isin(list(pulled | history.referenced_between(
        day, day + timedelta(days=HORIZON)))).all()
    with pytest.raises(ValueError, match="after the last stored pulls"):
        reused_after(history, labelled.index, history.days[-1], HORIZON)


def test_a_labelled_date_gives_at_most_the_cap_of_examples_the_same_ones_each_time(sandbox_history, monkeypatch):
    """A big registry trains on a uniform sample of each date's deletable images, not on all of them."""
    history = sandbox_history.history
    day = labelled_days(history, HORIZON, history.pulls.last_day)[0]
    full = ExampleSet(history, HORIZON, safety_floor(GcPolicy())).day(day)
    monkeypatch.setattr(reuse_model, "MAX_EXAMPLES_PER_DAY", len(full) // 2)
    first = ExampleSet(history, HORIZON, safety_floor(GcPolicy())).day(day)
    again = ExampleSet(history, HORIZON, safety_floor(GcPolicy())).day(day)
    assert len(first) == len(full) // 2
    assert first.index.equals(again.index), "the same history must give the same examples"
    pd.testing.assert_frame_equal(first, full.loc[first.index])        # rows are sampled, never altered


def test_model_is_calibrated_on_the_sandbox_history(sandbox_history, examples):
    """Held-out predicted reuse is close to what was observed, overall and decile by decile.

    The short test history spans less than the quarter the model asks of its labels in
    production, so that requirement is waived here.
    """
    model = train(examples, sandbox_history.history.pulls.last_day, min_span_days=0)
    assert not model.is_fallback, model.fallback_reason
    table = model.calibration
    images = table["images"].sum()
    assert images >= 500
    overall_predicted = (table["predicted"] * table["images"]).sum() / images
    overall_observed = (table["observed"] * table["images"]).sum() / images
    assert abs(overall_predicted - overall_observed) < 0.05, table
    weighted_error = (np.abs(table["predicted"] - table["observed"]) * table["images"]).sum() / images
    assert weighted_error < 0.1, table


def test_model_trained_before_a_date_uses_only_horizons_over_by_then(sandbox_history, examples):
    history = sandbox_history.history
    as_of = history.pulls.last_day - timedelta(days=7)
    model = train(examples, as_of, min_span_days=0)
    assert not model.is_fallback, model.fallback_reason
    assert max(model.trained_on) + timedelta(days=HORIZON) <= as_of
    assert min(model.trained_on) >= history.pulls.first_day + timedelta(days=WARM_UP_DAYS)


def test_too_little_history_falls_back_to_conservative_priors(sandbox_history, examples):
    history = sandbox_history.history
    days = labelled_days(history, HORIZON, history.pulls.last_day)[:MIN_LABELLED_DATES - 1]
    few = pd.concat([examples.day(day) for day in days])
    model = fit_reuse_model(few, HORIZON)
    assert model.is_fallback and "labelled as-of date" in (model.fallback_reason or "")

    features = examples.day(days[-1])
    p = model.predict(features)
    recent = features["days_idle"] <= 2 * HORIZON
    assert (p[recent] == 1).all() and (p[~recent] == FALLBACK_PRIOR).all()
    assert model.score(features)["reason"].str.contains("fallback: only").all()


def test_too_few_reused_images_fall_back_too(examples, sandbox_history):
    days = labelled_days(sandbox_history.history, HORIZON, sandbox_history.history.pulls.last_day)
    unused = pd.concat([examples.day(day) for day in days]).assign(reused=False)
    model = fit_reuse_model(unused, HORIZON, min_span_days=0)
    assert model.is_fallback and "reused" in (model.fallback_reason or "")


def test_a_reason_reads_like_a_sentence(build_state):
    snapshot = build_state()
    old = snapshot.image("old", pushed=300)
    snapshot.tag(old, "latest", revision=3)
    snapshot.pull(old, 142)
    features = build_features(snapshot.state(), snapshot.pull_history())
    text = reasons(features, pd.Series([0.004], index=features.index)).iloc[0]
    assert text == "last pulled 142 d ago; 3 newer revisions; no workload reference; p_reuse 0.4%"


def test_calibration_table_has_deciles():
    p = np.linspace(0, 1, 1000)
    table = calibration_table(p, p > 0.5)
    assert table["decile"].tolist() == list(range(1, 11))
    assert table["observed"].iloc[0] == 0 and table["observed"].iloc[-1] == 1


def test_labels_spanning_less_than_a_quarter_fall_back(sandbox_history, examples):
    model = train(examples, sandbox_history.history.pulls.last_day)
    assert model.is_fallback and "quarterly rhythms" in (model.fallback_reason or "")


def test_every_model_feature_is_used(sandbox_history, examples):
    model = train(examples, sandbox_history.history.pulls.last_day, min_span_days=0)
    assert model.feature_names == MODEL_FEATURES
    assert set(model.coefficient_table()["feature"]) == {"intercept", *MODEL_FEATURES}
