"""Per-image features as of a date: what the registry's own history says about each image.

The reuse model (`reuse_model.py`), the rule baselines (`rules.py`) and the backtest all start
from the same two inputs: a stored snapshot of the cluster (images, tags, references, builds,
namespaces, scans) and the daily pull history up to the as-of date. Nothing here looks past the
as-of date, so the same code scores today's registry and replays a past day in a backtest.

Why these features. On real, noisy pull histories a model on idle time, age and pull counts
alone loses to Harbor's plain "not pulled within 60 days" rule: scanners, mirrors and CI
matrices re-pull old versions on a rhythm or in bursts across a whole repository. What
separates "idle and done" from "idle between two sweeps" is the image's own rhythm (its longest
past idle gap, how many days a quarter it is active, idle now against its usual gap), what the
whole repository is doing (recent pulls of any version, bursts that re-pull every version) and
where the image sits among its repository's versions. Those are computed here on integer
codes of digests, repositories and days: 300,000 images, a million tag revisions and 10
million (digest, repository, day) pull rows take about 15 seconds on one core.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..lake import Lake, LakeNotFound

SEVERITY_RANK = {"UNKNOWN": 0, "LOW": 1, "MEDIUM": 2, "HIGH": 3, "CRITICAL": 4}
ENV_RANK = {"dev": 0, "test": 0, "staging": 1, "prod": 2, "platform": 2}
TIER_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platform": 2}
RELEASE_TAG = r"^(v?\d+\.\d+(\.\d+)?([-+.][0-9A-Za-z.-]+)?|release-.+)$"
MAINLINE_REFS = r"^(refs/heads/)?(main|master|trunk|release[-/].+|v?\d+\.\d+.*)$"
SIGNATURE_TAG = r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$"
BUILD_REF_LABEL = "io.openshift.build.commit.ref"

# A repository "bursts" on a day when it re-pulls at least this share of its versions (and at
# least BURST_MIN_DIGESTS of them): a compliance mirror or scanner sweeping every version.
BURST_SHARE = 0.5
BURST_MIN_DIGESTS = 3
QUARTER_DAYS = 91
MONTH_DAYS = 30
WAKE_IDLE_DAYS = 30
NEVER = 10_000.0            # "days since" for something that never happened in the history

# The model's inputs, in a fixed order; every one is numeric and never NaN.
MODEL_FEATURES: tuple[str, ...] = (
    "age_days", "days_idle", "never_pulled", "observed_days",
    "pulls_7", "pulls_30", "pulls_90", "active_days_30", "active_days_90", "pull_trend",
    "longest_idle_gap", "typical_gap", "idle_vs_longest_gap", "idle_vs_typical_gap", "active_days_per_quarter",
    "woke_one_quarter_ago", "woke_one_month_ago", "registry_woke_one_quarter_ago", "registry_woke_one_month_ago",
    "revision_index", "newer_revisions", "has_newer_revision", "untagged", "tag_heads", "release_tag", "feature_tag",
    "feature_branch_build", "env_rank", "tier_rank",
    "ever_referenced", "days_since_referenced",
    "worst_severity", "size_bytes",
    "repo_pulls_7", "repo_pulls_30", "repo_active_share_30", "repo_versions",
    "repo_burst_days", "days_since_repo_burst", "burst_participation", "registry_burst_share_one_quarter_ago",
    "version_rank", "version_rank_share", "newer_versions_pulled_30",
)


@dataclass(frozen=True)
class RegistryState:
    """One stored snapshot: what the cluster and registry held at the end of `day`."""

    day: date
    images: pd.DataFrame
    tags: pd.DataFrame
    references: pd.DataFrame
    builds: pd.DataFrame
    layers: pd.DataFrame
    namespaces: pd.DataFrame
    scans: pd.DataFrame
    # Every (index, child) listing when the extraction staged it; None: only images.index_digest is known.
    index_children: pd.DataFrame | None = None


def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})


def read_scans(lake: Lake, last: date) -> pd.DataFrame:
    """Every stored scan finding up to `last` (the columns the features use)."""
    try:
        return lake.read_range("scans", date(1970, 1, 1), last, columns=["digest", "severity", "vuln_id", "scanned_at"])
    except LakeNotFound:
        return _empty(["digest", "severity", "vuln_id", "scanned_at"])


def load_state(lake: Lake, day: date, scans: pd.DataFrame | None = None, *,
               run_ids: Mapping[str, str] | None = None) -> RegistryState:
    """The snapshot of `day` from the lake; scans are every finding scanned on or before it.

    Snapshot datasets cannot be re-extracted for a past day, so a missing one raises
    LakeNotFound instead of being silently replaced by another day's. Pass `scans` (from
    `read_scans`) to reuse one read across many days, and `run_ids` (dataset -> run id, as a
    plan's SnapshotIdentity names them) to read exactly those runs instead of the latest.
    """
    run_ids = run_ids or {}

    def optional(name: str, columns: list[str] | None) -> pd.DataFrame | None:
        try:
            return lake.read(name, day, run_id=run_ids.get(name))
        except LakeNotFound:
            return None if columns is None else _empty(columns)

    images = lake.read("images", day, run_id=run_ids.get("images"))
    tags = lake.read("tags", day, run_id=run_ids.get("tags"))
    references = lake.read("references", day, run_id=run_ids.get("references"))
    builds = optional("builds", ["namespace", "name", "output_digest", "source_uri", "commit", "ref", "completed_at"])
    layers = optional("layers", ["image_digest", "layer_digest", "size_bytes", "position"])
    namespaces = optional("namespaces", ["namespace", "labels", "annotations"])
    scans = read_scans(lake, day) if scans is None else scans
    if len(scans):
        end = pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1)
        scans = scans[pd.to_datetime(scans["scanned_at"], utc=True) < end]
    return RegistryState(day, images, tags, references, builds, layers, namespaces, scans,
                         optional("index_children", None))


def snapshot_days(lake: Lake) -> list[date]:
    """Days with a stored snapshot (images, tags and references all committed), oldest first."""
    days = set(lake.days("images"))
    for name in ("tags", "references"):
        days &= set(lake.days(name))
    return sorted(days)


@dataclass
class PullHistory:
    """Daily pulls per (digest, repository), compacted once for many as-of dates.

    `day` is an integer day number (days since 1970-01-01) so windows are integer compares;
    `first_day`/`last_day` bound what was stored, which matters: silence outside them is
    "unknown", not "no pulls".
    """

    frame: pd.DataFrame            # digest, repository (categorical), day (int32), pulls (int64); sorted
    first_day: date
    last_day: date

    @classmethod
    def from_frame(cls, pulls: pd.DataFrame, first_day: date | None = None,
                   last_day: date | None = None) -> "PullHistory":
        """Sum pulls_daily rows (any tag, any cluster) per (digest, repository, day)."""
        digest_code, digests = pd.factorize(pulls["digest"])
        repository_code, repositories = pd.factorize(pulls["repository"])
        day = _day_numbers(pulls["day"]).astype(np.int64)
        if len(day) == 0 and (first_day is None or last_day is None):
            raise ValueError("an empty pull history needs explicit first_day and last_day")
        first_day = first_day or _day_of(int(day.min()))
        last_day = last_day or _day_of(int(day.max()))
        span = max(int(day.max()) - _day_number(first_day) + 1 if len(day) else 1, 1)
        # (digest, repository) pairs are few next to all their combinations: code them first.
        pair_code, pairs = pd.factorize(digest_code.astype(np.int64) * max(len(repositories), 1) + repository_code)
        keys, total = _sum_by_key(pair_code.astype(np.int64) * span + (day - _day_number(first_day)),
                                  pulls["pulls"].to_numpy(dtype=np.int64))
        positive = total > 0
        keys, total = keys[positive], total[positive]
        pair, offset = np.asarray(pairs)[keys // span], keys % span
        frame = pd.DataFrame({
            "digest": pd.Categorical.from_codes(pair // max(len(repositories), 1), categories=pd.Index(digests)),
            "repository": pd.Categorical.from_codes(pair % max(len(repositories), 1), categories=pd.Index(repositories)),
            "day": (offset + _day_number(first_day)).astype(np.int32),
            "pulls": total,
        })
        return cls(frame, first_day, last_day)

    @classmethod
    def from_lake(cls, lake: Lake, first: date, last: date) -> "PullHistory":
        """Every stored day of pulls_daily from `first` to `last`; a gap raises LakeNotFound."""
        pulls = lake.read_range("pulls_daily", first, last, columns=["day", "repository", "digest", "pulls"],
                                require_every_day=True)
        return cls.from_frame(pulls, first, last)

    def until(self, as_of: date) -> pd.DataFrame:
        """Rows on or before `as_of` (what a decision taken at the end of `as_of` may know)."""
        return self.frame[self.frame.day <= _day_number(as_of)]

    def between(self, after: date, through: date) -> pd.DataFrame:
        """Rows strictly after `after` and on or before `through`."""
        day = self.frame.day
        return self.frame[(day > _day_number(after)) & (day <= _day_number(through))]


# Snapshots and feature frames History keeps in memory, most recently used first. Training walks
# every labelled date once, in order, and a backtest revisits a date only while deciding on it;
# keeping them all would hold a year of weekly snapshots of an L registry (each ~1M tag rows and
# millions of layer rows) at once, tens of GiB. Reading a snapshot back costs a parquet read.
CACHED_DAYS = 3


@dataclass
class History:
    """The lake's snapshots and pulls, read once and shared by training, scoring and backtests."""

    lake: Lake
    pulls: PullHistory
    days: list[date]
    scans: pd.DataFrame = field(repr=False)
    _states: OrderedDict[date, RegistryState] = field(default_factory=OrderedDict, repr=False)
    _pinned: dict[date, RegistryState] = field(default_factory=dict, repr=False)
    _referenced: dict[date, frozenset[str]] = field(default_factory=dict, repr=False)
    _features: OrderedDict[tuple[date, int], pd.DataFrame] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def from_lake(cls, lake: Lake, last: date | None = None) -> "History":
        """Every snapshot and every stored pull day up to `last` (default: the newest pulls)."""
        pull_days = lake.days("pulls_daily")
        if not pull_days:
            raise LakeNotFound(f"pulls_daily has no committed data in {lake.url}; run `reglife extract` first")
        last = last or pull_days[-1]
        first = pull_days[0]
        days = [d for d in snapshot_days(lake) if d <= last]
        return cls(lake, PullHistory.from_lake(lake, first, last), days, read_scans(lake, last))

    def state(self, day: date) -> RegistryState:
        """The stored snapshot of `day` (read again only after CACHED_DAYS others were used)."""
        if day in self._pinned:
            return self._pinned[day]
        if day not in self._states:
            self._states[day] = load_state(self.lake, day, self.scans)
        return _recent(self._states, day)

    def pin(self, state: RegistryState) -> None:
        """From now on, `state` is the snapshot of its day: a plan scores exactly the runs its
        identity names, even when a later run of that day has been committed since. A pinned
        snapshot is never dropped from memory."""
        self._pinned[state.day] = state
        self._states.pop(state.day, None)
        self._referenced.pop(state.day, None)
        for key in [key for key in self._features if key[0] == state.day]:
            del self._features[key]

    def features(self, day: date, horizon_days: int) -> pd.DataFrame:
        """`build_features` of the `day` snapshot as of that day (kept for the CACHED_DAYS latest used)."""
        key = (day, horizon_days)
        if key not in self._features:
            self._features[key] = build_features(self.state(day), self.pulls, day, horizon_days=horizon_days,
                                                 last_referenced=self.reference_history(day))
        return _recent(self._features, key)

    def referenced(self, day: date) -> frozenset[str]:
        """Digests that some workload of the `day` snapshot references."""
        if day not in self._referenced:
            state = self._pinned.get(day) or self._states.get(day)
            if state is not None:
                frame = state.references
            else:
                frame = self.lake.read("references", day, columns=["digest"])
            self._referenced[day] = frozenset(frame["digest"].dropna())
        return self._referenced[day]

    def reference_history(self, as_of: date) -> pd.DataFrame:
        """Per digest, the last snapshot day on or before `as_of` in which a workload referenced it."""
        rows = [(digest, day) for day in self.days if day <= as_of for digest in self.referenced(day)]
        frame = pd.DataFrame(rows, columns=["digest", "day"])
        return frame.groupby("digest", as_index=True)["day"].max().rename("last_referenced").to_frame()

    def referenced_between(self, after: date, through: date) -> set[str]:
        """Digests referenced in any snapshot strictly after `after` and on or before `through`."""
        found: set[str] = set()
        for day in self.days:
            if after < day <= through:
                found |= self.referenced(day)
        return found


def _recent(cache: OrderedDict, key):
    """`cache[key]`, marked most recently used; the least recently used beyond CACHED_DAYS go."""
    cache.move_to_end(key)
    while len(cache) > CACHED_DAYS:
        cache.popitem(last=False)
    return cache[key]


def _day_numbers(days: pd.Series) -> np.ndarray:
    values = pd.to_datetime(days).to_numpy(dtype="datetime64[D]")
    return values.astype("int64").astype("int32")


def _day_number(day: date) -> int:
    return int(np.datetime64(day, "D").astype("int64"))


def _day_of(number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=number)


def _namespace_ranks(namespaces: pd.DataFrame, names: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    """Environment and tier rank per namespace name: from its labels, else from its name's suffix."""
    labels = {name: json.loads(text) if isinstance(text, str) and text else {}
              for name, text in zip(namespaces["namespace"], namespaces["labels"])} if len(namespaces) else {}
    env, tier = np.zeros(len(names)), np.zeros(len(names))
    for position, name in enumerate(names):
        own = labels.get(name, {})
        guessed = own.get("env") or next((e for e in ENV_RANK if str(name).endswith("-" + e)),
                                         "platform" if str(name).startswith("openshift") else "dev")
        env[position] = ENV_RANK.get(guessed, 0)
        tier[position] = TIER_RANK.get(own.get("tier", ""), 2 if env[position] == 2 else 0)
    return env, tier


def _codes(index: pd.Index, values: pd.Series) -> np.ndarray:
    """Positions of `values` in `index` (-1 where absent), through categories when there are few."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        lookup = index.get_indexer(values.cat.categories.astype(object))
        return np.where(values.cat.codes.to_numpy() >= 0, lookup[values.cat.codes.to_numpy()], -1)
    return index.get_indexer(pd.Index(values.astype(object)))


def _count(codes: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    return np.bincount(codes, weights=weights, minlength=size)[:size].astype(float)


def _reduce(ufunc: np.ufunc, codes: np.ndarray, values: np.ndarray, size: int, empty: float) -> np.ndarray:
    out = np.full(size, empty, dtype=float)
    ufunc.at(out, codes, values)
    return out


def distinct(values: np.ndarray) -> np.ndarray:
    """The distinct values, sorted: np.unique, by sorting.

    numpy 2.3+ answers a plain np.unique through a hash table, which on a million packed
    integer keys (image * width + blob) takes seconds where a sort takes tens of milliseconds.
    """
    ordered = np.sort(np.asarray(values))
    return ordered[np.r_[True, ordered[1:] != ordered[:-1]]] if len(ordered) else ordered


def _sum_by_key(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-negative keys, sorted, with the sum of the values of each.

    Key and value are packed into one int64 so that a plain sort groups them: numpy sorts
    integers several times faster than it argsorts them, and this runs on every pull row.
    Whatever bits the largest key leaves free hold the value (capped there); when fewer than
    20 are free, a slower argsort does the grouping instead.
    """
    if not len(keys):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    keys = keys.astype(np.int64)
    value_bits = 63 - int(keys.max()).bit_length()
    if value_bits >= 20:
        limit = (1 << value_bits) - 1
        packed = np.sort((keys << value_bits) | np.clip(values, 0, limit))
        group, value = packed >> value_bits, packed & limit
    else:
        order = np.argsort(keys, kind="stable")
        group, value = keys[order], values[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    return group[starts], np.add.reduceat(value.astype(np.int64), starts)


def image_pull_features(image: np.ndarray, day: np.ndarray, pulls: np.ndarray, size: int, today: int,
                        horizon_days: int) -> pd.DataFrame:
    """Pull counts, idle time and the image's own rhythm from pull rows up to the as-of day.

    `image` holds the image code of each (digest, repository, day) row (-1: not in the
    snapshot); rows of one image and day in several repositories are added up first.
    """
    keep = image >= 0
    age_all = (today - day[keep]).astype(np.int64)           # 0 = pulled on the as-of day itself
    span = int(age_all.max()) + 1 if len(age_all) else 1
    keys, summed = _sum_by_key(image[keep].astype(np.int64) * span + age_all, pulls[keep])
    count = summed.astype(float)
    codes, age = keys // span, keys % span
    out: dict[str, np.ndarray] = {}
    for window in (7, 30, 90):
        inside = age < window
        out[f"pulls_{window}"] = _count(codes[inside], size, count[inside])
        if window != 7:
            out[f"active_days_{window}"] = _count(codes[inside], size)
    previous = (age >= 30) & (age < 60)
    out["pull_trend"] = np.log1p(out["pulls_30"]) - np.log1p(_count(codes[previous], size, count[previous]))
    # Waking up: pulled in the window one period back that lines up with the coming horizon,
    # (as_of - P, as_of - P + horizon], after WAKE_IDLE_DAYS without a pull. For P = a quarter
    # this is the seasonal-naive forecast of a quarterly sweep; summed over the registry it
    # says whether a wave of old images came back at this point of the last quarter.
    for name, period in (("woke_one_quarter_ago", QUARTER_DAYS), ("woke_one_month_ago", MONTH_DAYS)):
        window = (age >= period - horizon_days) & (age < period)
        before = (age >= period) & (age < period + WAKE_IDLE_DAYS)
        out[name] = ((_count(codes[window], size) > 0) & (_count(codes[before], size) == 0)).astype(float)
    last = _reduce(np.minimum, codes, age.astype(float), size, np.inf)
    out["last_pull_age"] = np.where(np.isfinite(last), last, np.nan)
    out["active_days"] = _count(codes, size)
    # Keys are sorted by image, then age: consecutive rows of one image are its active days.
    same = codes[1:] == codes[:-1]
    gaps = (age[1:] - age[:-1])[same].astype(float)            # age ascends = going back in time
    out["longest_idle_gap"] = _reduce(np.maximum, codes[1:][same], gaps, size, 0.0)
    first_seen = _reduce(np.maximum, codes, age.astype(float), size, 0.0)
    active = out["active_days"] > 1
    span_days = np.where(active, first_seen - np.nan_to_num(out["last_pull_age"]), 0.0)
    out["typical_gap"] = np.where(active, span_days / np.maximum(out["active_days"] - 1, 1), 0.0)
    return pd.DataFrame(out)


def repository_pull_features(repository: np.ndarray, image: np.ndarray, day: np.ndarray, pulls: np.ndarray,
                             repo_sizes: np.ndarray, today: int, horizon_days: int) -> pd.DataFrame:
    """Per repository code: recent pulls of any version, and bursts that re-pull most versions at once.

    Rows are unique per (digest, repository, day), so the rows of a (repository, day) count
    its distinct digests. Besides one row per repository, returns each pull row's burst flag
    in the `row_burst` attribute of the frame.
    """
    repositories = len(repo_sizes)
    age = (today - day).astype(np.int64)
    span = int(age.max()) + 1 if len(age) else 1
    row_keys = repository.astype(np.int64) * span + age
    keys, summed = _sum_by_key(row_keys, pulls)
    key_repo, key_age = keys // span, keys % span
    key_pulls = summed.astype(float)
    key_digests = _sum_by_key(row_keys, np.ones(len(row_keys), dtype=np.int64))[1].astype(float)
    burst = (key_digests >= BURST_MIN_DIGESTS) & (key_digests >= BURST_SHARE * repo_sizes[key_repo])
    out = pd.DataFrame({
        "repo_pulls_7": _count(key_repo[key_age < 7], repositories, key_pulls[key_age < 7]),
        "repo_pulls_30": _count(key_repo[key_age < 30], repositories, key_pulls[key_age < 30]),
        "repo_burst_days": _count(key_repo[burst], repositories),
        "days_since_repo_burst": _reduce(np.minimum, key_repo[burst], key_age[burst].astype(float), repositories, NEVER),
        "repo_versions": repo_sizes.astype(float),
    })
    recent = (age < 30) & (image >= 0)
    images = int(image.max()) + 1 if len(image) else 1
    pairs = distinct(repository[recent].astype(np.int64) * images + image[recent])
    active = _count(pairs // images, repositories)
    out["repo_active_share_30"] = active / np.maximum(repo_sizes, 1)
    window = burst & (key_age >= QUARTER_DAYS - horizon_days) & (key_age < QUARTER_DAYS)
    out["registry_burst_share_one_quarter_ago"] = len(distinct(key_repo[window])) / max(repositories, 1)
    burst_keys = keys[burst]
    position = np.searchsorted(burst_keys, row_keys)
    out.attrs["row_burst"] = (position < len(burst_keys)) & (burst_keys[np.minimum(position, len(burst_keys) - 1)]
                                                             == row_keys) if len(burst_keys) else np.zeros(len(row_keys), bool)
    return out


def build_features(state: RegistryState, pulls: PullHistory | pd.DataFrame, as_of: date | None = None, *,
                   horizon_days: int = 30, last_referenced: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per image of the snapshot (indexed by digest) with every feature as of `as_of`.

    `pulls` is the pull history (only rows on or before as_of are used); `last_referenced`
    (digest -> last_referenced day) is the reference history across earlier snapshots, from
    `History.reference_history`; without it only the snapshot's own references count.
    Besides MODEL_FEATURES the frame carries descriptive columns (repository, tag, build ref,
    last pull day) that reasons and plans show. Everything is computed on integer codes of
    digests and repositories: string keys would cost more than all the arithmetic.
    """
    as_of = as_of or state.day
    history = pulls if isinstance(pulls, PullHistory) else PullHistory.from_frame(pulls)
    rows = history.until(as_of)
    today = _day_number(as_of)
    end_of_day = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)    # decisions happen at the end of as_of
    images = state.images.drop_duplicates("digest")
    digests = pd.Index(images["digest"].astype(object), name="digest")
    size = len(digests)
    tags = state.tags[~state.tags["tag"].astype(str).str.match(SIGNATURE_TAG).to_numpy(dtype=bool)]
    tag_image = _codes(digests, tags["digest"])
    tags, tag_image = tags[tag_image >= 0], tag_image[tag_image >= 0]
    tag_repository = (tags["namespace"].astype(str) + "/" + tags["imagestream"].astype(str)).to_numpy(dtype=object)
    home = images["repository"].astype(str).to_numpy(dtype=object)
    repositories = pd.Index(pd.unique(np.concatenate([home, tag_repository])))
    home_code, tag_repo_code = repositories.get_indexer(home), repositories.get_indexer(tag_repository)

    out: dict[str, np.ndarray] = {"repository": home}
    nanos = np.iinfo(np.int64).max
    tag_created = pd.to_datetime(tags["created_at"], utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    known = tag_created != np.iinfo(np.int64).min
    first_tagged = _reduce(np.minimum, tag_image[known], tag_created[known].astype(float), size, nanos)
    created = pd.to_datetime(images["created_at"], utc=True).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    end_nanos = end_of_day.value
    pushed = np.where(created != np.iinfo(np.int64).min, created.astype(float),
                      np.where(first_tagged < nanos, first_tagged, end_nanos))
    out["pushed_at"] = pd.to_datetime(pushed.astype(np.int64), utc=True)
    out["age_days"] = np.clip((end_nanos - pushed) / 86_400e9, 0, None)
    out["size_bytes"] = images["size_bytes"].to_numpy(dtype=float)

    # Pulls of the image itself: counts, idle time, rhythm.
    row_image = _codes(digests, rows["digest"])
    row_day, row_pulls = rows["day"].to_numpy(dtype=np.int64), rows["pulls"].to_numpy(dtype=np.int64)
    own = image_pull_features(row_image, row_day, row_pulls, size, today, horizon_days)
    never = own["last_pull_age"].isna().to_numpy()
    out["never_pulled"] = never.astype(float)
    out["days_idle"] = np.where(never, out["age_days"], own["last_pull_age"].to_numpy() + 0.5)
    out["last_pulled"] = pd.Timestamp(as_of) - pd.to_timedelta(own["last_pull_age"].to_numpy(), unit="D")
    out["observed_days"] = np.minimum(out["age_days"], (as_of - history.first_day).days + 1)
    for name in ("pulls_7", "pulls_30", "pulls_90", "active_days_30", "active_days_90", "pull_trend",
                 "longest_idle_gap", "typical_gap", "woke_one_quarter_ago", "woke_one_month_ago"):
        out[name] = own[name].to_numpy()
    # Registry-wide waves: the share of the images old enough to have been there that woke up.
    for name, period in (("woke_one_quarter_ago", QUARTER_DAYS), ("woke_one_month_ago", MONTH_DAYS)):
        existed = out["age_days"] > period + WAKE_IDLE_DAYS
        out[f"registry_{name}"] = np.full(size, out[name][existed].sum() / max(int(existed.sum()), 1))
    usual = np.maximum(out["longest_idle_gap"], 1.0)
    out["idle_vs_longest_gap"] = np.where(never, 0.0, out["days_idle"] / usual)
    several = own["active_days"].to_numpy() > 1
    out["idle_vs_typical_gap"] = np.where(several, out["days_idle"] / np.maximum(out["typical_gap"], 1.0), 0.0)
    out["active_days_per_quarter"] = own["active_days"].to_numpy() / np.maximum(out["observed_days"], 1) * QUARTER_DAYS

    # Tags: revision index, newer revisions, release- and feature-looking names.
    revision = tags["revision"].to_numpy(dtype=float)
    tag_text = tags["tag"].astype(str)
    revision_index = _reduce(np.minimum, tag_image, revision, size, np.inf)
    out["untagged"] = (~np.isfinite(revision_index)).astype(float)
    out["revision_index"] = np.where(np.isfinite(revision_index), revision_index, -1.0)
    # Newer revisions in the tag where the image sits deepest: a digest still current under a
    # release tag may be three revisions behind on `latest`.
    out["newer_revisions"] = _reduce(np.maximum, tag_image, revision, size, 0.0)
    out["has_newer_revision"] = (out["newer_revisions"] > 0).astype(float)
    out["tag_heads"] = _count(tag_image[revision == 0], size)
    out["release_tag"] = (_count(tag_image[tag_text.str.match(RELEASE_TAG).to_numpy(dtype=bool)], size) > 0).astype(float)
    out["feature_tag"] = (_count(tag_image[tag_text.str.startswith(("feature-", "feature/")).to_numpy(dtype=bool)],
                                 size) > 0).astype(float)
    order = np.lexsort((revision, tag_image))
    first_rows = order[np.r_[True, tag_image[order][1:] != tag_image[order][:-1]]] if len(order) else order
    shown = np.full(size, None, dtype=object)
    shown[tag_image[first_rows]] = tag_repository[first_rows] + ":" + tag_text.to_numpy(dtype=object)[first_rows]
    out["tag"] = shown

    # Build source: the Build's git ref, else the image label OpenShift builds write.
    build_ref = np.full(size, None, dtype=object)
    # In Arrow (RE2), not per row in Python: every image has labels, and there are 300,000 of them.
    labels = pa.array(images["labels"], type=pa.string(), from_pandas=True)
    label_ref = pc.extract_regex(labels, r'"' + BUILD_REF_LABEL.replace(".", r"\.") + r'"\s*:\s*"(?P<ref>[^"]*)"')
    build_ref[:] = label_ref.field("ref").to_numpy(zero_copy_only=False)
    builds = state.builds.dropna(subset=["output_digest"])
    build_image = _codes(digests, builds["output_digest"])
    has_build = (build_image >= 0) & builds["ref"].notna().to_numpy()
    build_ref[build_image[has_build]] = builds["ref"].to_numpy(dtype=object)[has_build]
    out["build_ref"] = build_ref
    ref_code, ref_names = pd.factorize(pd.Series(build_ref, dtype=object))        # a few refs, matched once each
    mainline = pd.Series(ref_names, dtype=object).astype(str).str.match(MAINLINE_REFS).to_numpy(dtype=bool)
    out["feature_branch_build"] = ((ref_code >= 0) & ~np.append(mainline, True)[ref_code]).astype(float)

    # Namespace environment and tier: the best of every namespace that holds the image.
    holder_image = np.concatenate([tag_image, np.arange(size)])
    holder_namespace = np.concatenate([tags["namespace"].astype(str).to_numpy(dtype=object),
                                       repositories.str.split("/", n=1).str[0].to_numpy(dtype=object)[home_code]])
    namespace_code, namespace_names = pd.factorize(holder_namespace)
    env, tier = _namespace_ranks(state.namespaces, pd.Index(namespace_names))
    out["env_rank"] = _reduce(np.maximum, holder_image, env[namespace_code], size, 0.0)
    out["tier_rank"] = _reduce(np.maximum, holder_image, tier[namespace_code], size, 0.0)

    # Workload references: now, and across the stored snapshots before.
    referenced_now = np.zeros(size, dtype=bool)
    reference_image = _codes(digests, state.references["digest"].dropna())
    referenced_now[reference_image[reference_image >= 0]] = True
    since = np.full(size, np.nan)
    if last_referenced is not None and len(last_referenced):
        last_image = _codes(digests, pd.Series(last_referenced.index))
        days_ago = np.array([(as_of - d).days for d in last_referenced["last_referenced"]], dtype=float)
        since[last_image[last_image >= 0]] = days_ago[last_image >= 0]
    out["referenced_now"] = referenced_now.astype(float)
    out["ever_referenced"] = (referenced_now | ~np.isnan(since)).astype(float)
    out["days_since_referenced"] = np.where(referenced_now, 0.0, np.nan_to_num(since, nan=NEVER))

    scans = state.scans
    scan_image = _codes(digests, scans["digest"]) if len(scans) else np.zeros(0, dtype=np.int64)
    if len(scans):
        scanned = (pd.to_datetime(scans["scanned_at"], utc=True) < end_of_day).to_numpy(dtype=bool)
        rank = scans["severity"].astype(str).str.upper().map(SEVERITY_RANK).fillna(0).to_numpy(dtype=float)
        usable = scanned & (scan_image >= 0)
        out["worst_severity"] = _reduce(np.maximum, scan_image[usable], rank[usable], size, 0.0)
    else:
        out["worst_severity"] = np.zeros(size)

    # Repository context: every repository that holds the image (its push repository and
    # every image stream that tags it), reduced to the most active one.
    pair_keys = distinct(np.concatenate([tag_image.astype(np.int64) * len(repositories) + tag_repo_code,
                                         np.arange(size, dtype=np.int64) * len(repositories) + home_code]))
    pair_image, pair_repo = pair_keys // len(repositories), pair_keys % len(repositories)
    repo_sizes = _count(pair_repo, len(repositories))
    row_repo = _codes(repositories, rows["repository"])
    in_view = row_repo >= 0
    repo = repository_pull_features(row_repo[in_view], row_image[in_view], row_day[in_view], row_pulls[in_view],
                                    repo_sizes, today, horizon_days)
    for name in ("repo_pulls_7", "repo_pulls_30", "repo_active_share_30", "repo_versions", "repo_burst_days",
                 "registry_burst_share_one_quarter_ago"):
        out[name] = _reduce(np.maximum, pair_image, repo[name].to_numpy()[pair_repo], size, 0.0)
    out["days_since_repo_burst"] = _reduce(np.minimum, pair_image, repo["days_since_repo_burst"].to_numpy()[pair_repo],
                                           size, NEVER)
    # How often the image itself was among the versions its repositories' bursts re-pulled.
    joined_rows = repo.attrs["row_burst"] & (row_image[in_view] >= 0)
    out["burst_participation"] = _count(row_image[in_view][joined_rows], size) / np.maximum(out["repo_burst_days"], 1)

    # Position among the push repository's versions (newest = 0), and how many newer versions
    # were pulled lately: an old version whose successors are in use is left behind.
    order = np.lexsort((-pushed, home_code))
    group = home_code[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if size else np.zeros(0, dtype=int)
    group_start = np.repeat(starts, np.diff(np.r_[starts, size]))
    rank = np.empty(size)
    rank[order] = np.arange(size) - group_start
    count_in_repo = np.bincount(home_code, minlength=len(repositories))[home_code]
    out["version_rank"] = rank
    out["version_rank_share"] = rank / np.maximum(count_in_repo - 1, 1)
    pulled = (out["pulls_30"] > 0).astype(float)[order]
    cumulative = np.cumsum(pulled)
    before_group = np.repeat(np.r_[0.0, cumulative][starts], np.diff(np.r_[starts, size]))
    newer_pulled = np.empty(size)
    newer_pulled[order] = cumulative - before_group - pulled
    out["newer_versions_pulled_30"] = newer_pulled
    frame = pd.DataFrame(out, index=digests)
    frame["as_of"] = as_of
    return frame
