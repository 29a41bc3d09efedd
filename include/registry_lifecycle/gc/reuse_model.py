"""P(reuse): the chance that an image is pulled, or referenced by a workload, within the horizon.

Learned from the registry's own history, never from a hand-set rule: for past as-of dates
whose whole horizon is already in the stored pulls, the label of each deletable image is what
happened in the H days after (a pull of that digest in any repository, or a reference to it
in a later snapshot). The model is a ridge-regularised logistic GLM (statsmodels) on
transformed, standardised features (`features.MODEL_FEATURES`), calibrated by isotonic
regression on held-out blocks of labelled dates, so that "p_reuse 0.4%" means about 4 in
1,000 such images come back, which is what a threshold in the policy promises.

Why only deletable images train it: the model decides among images no hard protection holds
(see `protections.py`); images held by a workload reference would teach it that "referenced
means reused", which is true and useless.

Why a fallback: with too little history (fewer than MIN_LABELLED_DATES labelled as-of dates,
or too few reused or unused examples) a fitted model would be noise. Then every image pulled
or pushed within twice the horizon gets p_reuse = 1, and the rest a high prior, so a plan
deletes nothing until the history can speak; `fallback_reason` says why, and the plan shows it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy.optimize import isotonic_regression

from ..config import GcPolicy
from .features import MODEL_FEATURES, History
from .protections import protect

log = logging.getLogger(__name__)

MIN_LABELLED_DATES = 3
WARM_UP_DAYS = 91                # a quarter of stored pulls before an as-of date shows its rhythm
MIN_SPAN_DAYS = 91               # labelled dates must span a quarter to contain a quarterly sweep
MIN_CLASS_EXAMPLES = 20
# Deletable images a labelled date contributes at most, drawn uniformly (so the date's reuse rate
# is kept). A year of weekly snapshots of a 300,000-image registry would otherwise hand the GLM
# some ten million rows (gigabytes of features) where a few hundred thousand fit the same ~45
# coefficients; a registry below the cap trains on every image.
MAX_EXAMPLES_PER_DAY = 20_000
FALLBACK_PRIOR = 0.9
RIDGE_ALPHA = 0.05
CALIBRATION_FOLDS = 4            # blocks of consecutive labelled dates, each held out once
P_FLOOR = 1e-5

# Counts, durations and sizes enter as log1p: a day more idle matters after 3 days, not after 300.
_LOG_FEATURES = frozenset({
    "age_days", "days_idle", "observed_days", "pulls_7", "pulls_30", "pulls_90", "active_days_30", "active_days_90",
    "longest_idle_gap", "typical_gap", "idle_vs_longest_gap", "idle_vs_typical_gap", "active_days_per_quarter",
    "revision_index", "newer_revisions", "tag_heads", "days_since_referenced", "size_bytes", "repo_pulls_7",
    "repo_pulls_30", "repo_versions", "repo_burst_days", "days_since_repo_burst", "version_rank",
    "newer_versions_pulled_30",
})


def transform(features: pd.DataFrame, names: tuple[str, ...] = MODEL_FEATURES) -> np.ndarray:
    """The model's inputs before standardisation: log1p of counts and durations, others as they are."""
    columns = []
    for name in names:
        values = features[name].to_numpy(dtype=float)
        columns.append(np.log1p(np.clip(values, 0, None)) if name in _LOG_FEATURES else values)
    return np.column_stack(columns) if columns else np.empty((len(features), 0))


# ------------------------------------------------------------------------------ labels
def reused_after(history: History, digests: pd.Index, as_of: date, horizon_days: int) -> pd.Series:
    """Per digest: pulled in any repository, or referenced in a later snapshot, in (as_of, as_of + H].

    The same definition scores a backtest's regret. Raises ValueError when the stored pulls do
    not cover the whole horizon: silence after the last stored day is not "no reuse".
    """
    end = as_of + timedelta(days=horizon_days)
    if end > history.pulls.last_day:
        raise ValueError(f"the horizon of {as_of} ends {end}, after the last stored pulls ({history.pulls.last_day})")
    after = history.pulls.between(as_of, end)
    pulled = set(after["digest"].astype(object).unique())
    referenced = history.referenced_between(as_of, end)
    return pd.Series(digests.isin(list(pulled | referenced)), index=digests, name="reused")


def unprotected(history: History, day: date, gc: GcPolicy) -> pd.Index:
    """Digests of the `day` snapshot that no hard protection holds: the ones a score decides."""
    state = history.state(day)
    images = state.images.drop_duplicates("digest")
    as_of = datetime.combine(day, time(23, 59, 59), tzinfo=timezone.utc)
    protections = protect(images, state.tags, state.references, state.namespaces, gc, as_of)
    free = protections.map(len).to_numpy() == 0
    return pd.Index(protections.index[free], name="digest")


def labelled_days(history: History, horizon_days: int, known_by: date) -> list[date]:
    """Snapshot days whose whole horizon is stored and was over by `known_by`, and that had at
    least WARM_UP_DAYS of stored pulls before them.

    Why the warm-up: before a quarter of history an image's quarterly rhythm, and the
    registry's quarterly waves, are invisible, so examples from those days teach the model
    that an old idle image stays idle; it would then delete right before the next sweep.
    Until enough warm days exist the model falls back to its conservative priors.
    """
    last = min(history.pulls.last_day, known_by)
    warm_from = history.pulls.first_day + timedelta(days=WARM_UP_DAYS)
    return [d for d in history.days if d + timedelta(days=horizon_days) <= last and d >= warm_from]


def safety_floor(gc: GcPolicy) -> GcPolicy:
    """The protections every policy of a backtest shares, and the ones the model learns under:
    the safety invariants, not the knobs.

    Workload references, rollback targets, DR and suspended CronJobs, referrers and index
    children, legal holds: no policy may delete those. Tag-revision counts and tag-name
    patterns are exactly what the rules differ in (and what the model decides from data), so
    they are left to each policy; `keep_younger_than` stays, a push in flight is never garbage.
    """
    return gc.model_copy(update={"keep_tag_revisions": 0, "protected_tag_patterns": {}})


@dataclass
class ExampleSet:
    """Labelled examples of deletable images per as-of day, built once and reused by the backtest."""

    history: History
    horizon_days: int
    gc: GcPolicy
    _examples: dict[date, pd.DataFrame] = field(default_factory=dict, repr=False)
    _candidates: dict[date, pd.Index] = field(default_factory=dict, repr=False)

    def candidates(self, day: date) -> pd.Index:
        if day not in self._candidates:
            self._candidates[day] = unprotected(self.history, day, self.gc)
        return self._candidates[day]

    def day(self, day: date) -> pd.DataFrame:
        """Features of the deletable images of `day` with their `reused` label."""
        if day not in self._examples:
            features = self.history.features(day, self.horizon_days)
            chosen = features.loc[features.index.isin(self.candidates(day))]
            if len(chosen) > MAX_EXAMPLES_PER_DAY:
                # Seeded by the date: the same history always yields the same examples and model.
                chosen = chosen.sample(MAX_EXAMPLES_PER_DAY, random_state=day.toordinal()).sort_index()
            label = reused_after(self.history, chosen.index, day, self.horizon_days)
            self._examples[day] = chosen.assign(reused=label.to_numpy())
        return self._examples[day]

    def until(self, known_by: date) -> pd.DataFrame:
        """Every labelled example whose horizon was over by `known_by`."""
        days = labelled_days(self.history, self.horizon_days, known_by)
        frames = [self.day(d) for d in days]
        return pd.concat(frames) if frames else pd.DataFrame(columns=[*MODEL_FEATURES, "as_of", "reused"])

    @classmethod
    def for_policy(cls, history: History, gc: GcPolicy, horizon_days: int | None = None) -> "ExampleSet":
        """The examples a model for `gc` learns from: the images its safety floor leaves deletable,
        labelled over `horizon_days` (default: the policy's). The backtest and the nightly
        score train on the same set, so the backtest's figures are those of the model that plans."""
        return cls(history, horizon_days or gc.horizon_days, safety_floor(gc))


# ------------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class ReuseModel:
    """A fitted (or fallback) reuse model for one horizon."""

    horizon_days: int
    feature_names: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    coefficients: np.ndarray                 # intercept first
    knots: tuple[np.ndarray, np.ndarray]     # calibration: logit(raw p) -> p_reuse, interpolated
    trained_on: tuple[date, ...]
    calibrated_on: tuple[date, ...]          # as-of dates whose held-out predictions fitted the calibration
    calibration: pd.DataFrame                # held out: decile, predicted, observed, images
    fallback_reason: str | None = None

    @property
    def is_fallback(self) -> bool:
        return self.fallback_reason is not None

    def raw(self, features: pd.DataFrame) -> np.ndarray:
        """Uncalibrated GLM probability."""
        design = (transform(features, self.feature_names) - self.center) / self.scale
        eta = self.coefficients[0] + design @ self.coefficients[1:]
        return 1.0 / (1.0 + np.exp(-np.clip(eta, -35, 35)))

    def predict(self, features: pd.DataFrame) -> pd.Series:
        """Calibrated p_reuse per image (same index as `features`)."""
        if self.is_fallback:
            return pd.Series(fallback_p(features, self.horizon_days), index=features.index, name="p_reuse")
        p = _calibrated(self.raw(features), self.knots)
        return pd.Series(np.clip(p, P_FLOOR, 1 - P_FLOOR), index=features.index, name="p_reuse")

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """p_reuse and a one-line reason per image, ready for the plan."""
        p = self.predict(features)
        return pd.DataFrame({"p_reuse": p, "reason": reasons(features, p, self.fallback_reason)}, index=features.index)

    def coefficient_table(self) -> pd.DataFrame:
        """Standardised coefficients, largest effect first: what the model leans on."""
        table = pd.DataFrame({"feature": ("intercept", *self.feature_names), "coefficient": self.coefficients})
        return table.reindex(table["coefficient"].abs().sort_values(ascending=False).index).reset_index(drop=True)


def fallback_p(features: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """Conservative priors: certain reuse if pulled or pushed within 2×H, else FALLBACK_PRIOR."""
    recent = features["days_idle"].to_numpy(dtype=float) <= 2 * horizon_days
    return np.where(recent, 1.0, FALLBACK_PRIOR)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


def _calibrated(raw: np.ndarray, knots: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    x, y = knots
    return np.interp(_logit(raw), x, y)


def calibration_table(p: np.ndarray, observed: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Predicted against observed reuse by decile of predicted p (ties kept in one decile)."""
    frame = pd.DataFrame({"p": np.asarray(p, dtype=float), "y": np.asarray(observed, dtype=float)})
    if frame.empty:
        return pd.DataFrame(columns=["decile", "predicted", "observed", "images"])
    ranks = frame["p"].rank(method="min", pct=True)
    frame["decile"] = np.minimum((ranks * bins).apply(np.ceil).astype(int), bins)
    table = frame.groupby("decile").agg(predicted=("p", "mean"), observed=("y", "mean"), images=("y", "size"))
    return table.reset_index()


# Knots of a model that never calibrates: a fallback predicts from priors, a fold only gives raw p.
_UNCALIBRATED = (np.array([-50.0, 50.0]), np.array([0.0, 1.0]))


def _fallback(horizon_days: int, reason: str, trained_on: tuple[date, ...] = ()) -> ReuseModel:
    log.warning("reuse model: falling back to conservative priors: %s", reason)
    empty = np.zeros(0)
    return ReuseModel(horizon_days, (), empty, empty, np.zeros(1), _UNCALIBRATED, trained_on, (),
                      calibration_table(empty, empty), fallback_reason=reason)


def _fit_glm(examples: pd.DataFrame, feature_names: tuple[str, ...], alpha: float
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(center, scale, coefficients) of the ridge-regularised logistic GLM on `examples`."""
    design = transform(examples, feature_names)
    center = design.mean(axis=0)
    scale = design.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    standardised = sm.add_constant((design - center) / scale, has_constant="add")
    glm = sm.GLM(examples["reused"].to_numpy(dtype=float), standardised, family=sm.families.Binomial())
    # Ridge (L1_wt=0) keeps every feature but shrinks the collinear ones (pulls over 7/30/90 days).
    result = glm.fit_regularized(alpha=alpha, L1_wt=0.0, maxiter=300)
    return center, scale, np.asarray(result.params, dtype=float)


def fit_reuse_model(examples: pd.DataFrame, horizon_days: int, *,
                    feature_names: tuple[str, ...] = MODEL_FEATURES, alpha: float | None = None,
                    min_span_days: int = MIN_SPAN_DAYS) -> ReuseModel:
    """Fit on `examples` (features, `as_of`, `reused`) and calibrate on held-out periods.

    The labelled dates are split into CALIBRATION_FOLDS blocks of consecutive dates; each
    block is predicted by a GLM fitted without it, and an isotonic calibration is fitted on
    those held-out predictions, so calibration sees every regime of the history (a quarter with a
    compliance sweep, one without), not only the latest weeks. The model that scores is then
    fitted on every labelled date. Falls back to conservative priors, saying why, when the
    examples are too few to learn from, or when the labelled dates span less than
    `min_span_days`: a quarterly sweep can only be learnt from labels that cover one, and a
    model that never saw one deletes with confidence right before the next. `alpha` is the
    ridge penalty per example on standardised features (default RIDGE_ALPHA).
    """
    alpha = RIDGE_ALPHA if alpha is None else alpha
    days = tuple(sorted(pd.unique(examples["as_of"]))) if len(examples) else ()
    positives = int(examples["reused"].sum()) if len(examples) else 0
    negatives = len(examples) - positives
    if len(days) < MIN_LABELLED_DATES:
        return _fallback(horizon_days, f"only {len(days)} labelled as-of date(s) with a full {horizon_days}-day "
                                       f"horizon and {WARM_UP_DAYS} days of pulls before them in the stored "
                                       f"history; at least {MIN_LABELLED_DATES} are needed", days)
    if (days[-1] - days[0]).days < min_span_days:
        return _fallback(horizon_days, f"the {len(days)} labelled as-of dates span {(days[-1] - days[0]).days} days; "
                                       f"{min_span_days} are needed before quarterly rhythms can show in the labels",
                         days)
    if positives < MIN_CLASS_EXAMPLES or negatives < MIN_CLASS_EXAMPLES:
        return _fallback(horizon_days, f"{positives} reused and {negatives} unused deletable images in "
                                       f"{len(days)} labelled as-of dates; at least {MIN_CLASS_EXAMPLES} of each "
                                       "are needed", days)
    held_out_raw, held_out_observed = [], []
    for block in np.array_split(np.array(days, dtype=object), min(CALIBRATION_FOLDS, len(days))):
        inside = examples["as_of"].isin(list(block)).to_numpy()
        fitting, held_out = examples[~inside], examples[inside]
        if fitting["reused"].nunique() < 2:
            continue
        center, scale, coefficients = _fit_glm(fitting, feature_names, alpha)
        fold = ReuseModel(horizon_days, feature_names, center, scale, coefficients, _UNCALIBRATED, (), (),
                          calibration_table(np.zeros(0), np.zeros(0)))
        held_out_raw.append(fold.raw(held_out))
        held_out_observed.append(held_out["reused"].to_numpy(dtype=float))
    raw = np.concatenate(held_out_raw) if held_out_raw else np.zeros(0)
    observed = np.concatenate(held_out_observed) if held_out_observed else np.zeros(0)
    if len(np.unique(observed)) < 2:
        return _fallback(horizon_days, "no held-out period contains both reused and unused images, so the model "
                                       "cannot be calibrated", days)
    knots = _fit_isotonic(raw, observed)
    center, scale, coefficients = _fit_glm(examples, feature_names, alpha)
    return ReuseModel(horizon_days, feature_names, center, scale, coefficients, knots, days, days,
                      calibration_table(_calibrated(raw, knots), observed))


def _fit_isotonic(raw: np.ndarray, observed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Isotonic calibration of held-out predictions, as knots (logit of raw p, p_reuse).

    The pool-adjacent-violators blocks give the observed reuse rate per range of raw scores;
    each block's rate is smoothed to (reused + 0.5) / (images + 1), so a block with no reuse
    among 2,000 images says 0.02%, not an impossible 0. Interpolating between block centres
    keeps the model's ranking inside a block instead of flattening it; past the outermost
    centres the ranking runs on to P_FLOOR and 1 - P_FLOOR at the most extreme held-out scores.
    Without those end knots every image beyond the first or last centre ties (a thousand
    images at one p), and no threshold can choose among them: the backtest's frontier jumped
    from 7% regret straight to deleting everything.
    """
    order = np.argsort(raw, kind="stable")
    x, y = _logit(raw[order]), observed[order]
    fitted = isotonic_regression(y).x
    block = np.cumsum(np.r_[True, np.diff(fitted) != 0]) - 1
    images = np.bincount(block)
    rate = (np.bincount(block, weights=y) + 0.5) / (images + 1)
    centre = np.bincount(block, weights=x) / images
    rate = np.maximum.accumulate(rate)
    low, high = x[0], x[-1]
    if low < centre[0]:
        centre, rate = np.r_[low, centre], np.r_[min(P_FLOOR, rate[0]), rate]
    if high > centre[-1]:
        centre, rate = np.r_[centre, high], np.r_[rate, max(1 - P_FLOOR, rate[-1])]
    return centre, rate


def train(examples: ExampleSet, as_of: date, *, min_span_days: int = MIN_SPAN_DAYS) -> ReuseModel:
    """The model a decision at the end of `as_of` may use: trained only on horizons over by then."""
    return fit_reuse_model(examples.until(as_of), examples.horizon_days, min_span_days=min_span_days)


# ------------------------------------------------------------------------------ reasons
def _days(values: pd.Series) -> pd.Series:
    """Whole days, rounded down: "pulled 142 d ago" for a pull on the 142nd day back."""
    return np.floor(values.astype(float)).astype("Int64").astype(str)


def reasons(features: pd.DataFrame, p_reuse: pd.Series, fallback_reason: str | None = None) -> pd.Series:
    """One line a human can check per image, e.g.
    "last pulled 142 d ago; 3 newer revisions; no workload reference; p_reuse 0.4%"."""
    never = features["never_pulled"].to_numpy(dtype=bool)
    idle = _days(features["days_idle"])
    pulled = np.where(never, "never pulled, pushed " + idle + " d ago", "last pulled " + idle + " d ago")
    gap = features["longest_idle_gap"]
    rhythm = np.where((gap >= 7).to_numpy(), "; usually idle up to " + _days(gap) + " d", "")
    newer = features["newer_revisions"].astype(int)
    revisions = np.where(features["untagged"].to_numpy(dtype=bool), "; untagged",
                         np.where(newer.to_numpy() > 0, "; " + newer.astype(str) + " newer revision"
                                  + np.where(newer.to_numpy() == 1, "", "s"), "; current tag"))
    referenced = np.where(features["referenced_now"].to_numpy(dtype=bool), "; referenced by a workload",
                          np.where(features["ever_referenced"].to_numpy(dtype=bool),
                                   "; last referenced " + _days(features["days_since_referenced"]) + " d ago",
                                   "; no workload reference"))
    burst = np.where(features["repo_burst_days"].to_numpy() > 0,
                     "; repository re-pulled in bulk " + _days(features["days_since_repo_burst"]) + " d ago", "")
    probability = p_reuse.reindex(features.index).map(lambda p: f"; p_reuse {p:.1%}" if p >= 0.001 else f"; p_reuse {p:.2%}")
    text = pd.Series(pulled, index=features.index) + rhythm + revisions + referenced + burst + probability
    if fallback_reason:
        text = text + " (fallback: " + fallback_reason + ")"
    return text.rename("reason")
