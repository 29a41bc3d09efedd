"""The lake's data contracts: dataset names, their columns and types, and what kind of data each is.

Every writer and reader (DAGs, CLI, tests) takes its schema from here, so a column cannot be
renamed in one place only. Bump SCHEMA_VERSION when a contract changes incompatibly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa

SCHEMA_VERSION = 1

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
# How a `labels` column is written: compact, keys sorted, so that the labels the cluster and the
# registry report for one image are the same string. (One encoder, built once: json.dumps builds
# one per call, and half a million images are encoded at scale L.)
labels_json = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
TS = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    snapshot: bool          # describes the cluster at extraction time; cannot be re-read for a past date
    description: str


def _schema(*fields: tuple[str, pa.DataType, bool]) -> pa.Schema:
    return pa.schema([pa.field(name, dtype, nullable=nullable) for name, dtype, nullable in fields])


IMAGES = Dataset("images", _schema(
    ("digest", pa.string(), False), ("repository", pa.string(), False), ("media_type", pa.string(), False),
    ("size_bytes", pa.int64(), False), ("config_digest", pa.string(), True), ("created_at", TS, True),
    ("architecture", pa.string(), True), ("os", pa.string(), True), ("labels", pa.string(), True),
    ("subject_digest", pa.string(), True), ("index_digest", pa.string(), True), ("managed", pa.bool_(), False),
), ("digest",), True, "one row per manifest digest in the registry")

LAYERS = Dataset("layers", _schema(
    ("image_digest", pa.string(), False), ("layer_digest", pa.string(), False), ("size_bytes", pa.int64(), False),
    ("position", pa.int32(), False),
), ("image_digest", "position"), True,
    "one row per (image, blob): layers at 0..n-1, the config blob at -1 and the manifest itself at -2, "
    "since a registry GC frees all three")

TAGS = Dataset("tags", _schema(
    ("namespace", pa.string(), False), ("imagestream", pa.string(), False), ("tag", pa.string(), False),
    ("revision", pa.int32(), False), ("digest", pa.string(), False), ("created_at", TS, True),
), ("namespace", "imagestream", "tag", "revision"), True, "ImageStream tag revisions; revision 0 is current")

REFERENCES = Dataset("references", _schema(
    ("cluster", pa.string(), False), ("namespace", pa.string(), False), ("kind", pa.string(), False),
    ("name", pa.string(), False), ("container", pa.string(), False), ("image_ref", pa.string(), False),
    ("digest", pa.string(), True), ("source", pa.string(), False), ("active", pa.bool_(), False),
    ("observed_at", TS, False),
), ("cluster", "namespace", "kind", "name", "container", "source"), True, "workload image references")

PULLS_DAILY = Dataset("pulls_daily", _schema(
    ("day", pa.date32(), False), ("repository", pa.string(), False), ("digest", pa.string(), False),
    ("tag", pa.string(), True), ("cluster", pa.string(), False), ("pulls", pa.int64(), False),
    ("bytes", pa.int64(), False),
), ("day", "repository", "digest", "tag", "cluster"), False, "pulls per day, manifest and cluster")

SCANS = Dataset("scans", _schema(
    ("digest", pa.string(), False), ("scanner", pa.string(), False), ("vuln_id", pa.string(), False),
    ("severity", pa.string(), False), ("package", pa.string(), False), ("installed_version", pa.string(), True),
    ("fixed_version", pa.string(), True), ("scanned_at", TS, False),
), ("digest", "vuln_id", "package"), False, "vulnerability findings per image")

STORAGE_USAGE = Dataset("storage_usage", _schema(
    ("ts", TS, False), ("volume", pa.string(), False), ("used_bytes", pa.float64(), True),
    ("capacity_bytes", pa.float64(), True), ("source", pa.string(), False),
), ("ts", "volume"), False, "registry storage samples")

BUILDS = Dataset("builds", _schema(
    ("namespace", pa.string(), False), ("name", pa.string(), False), ("output_digest", pa.string(), True),
    ("source_uri", pa.string(), True), ("commit", pa.string(), True), ("ref", pa.string(), True),
    ("completed_at", TS, True),
), ("namespace", "name"), True, "OpenShift Builds and their outputs")

INDEX_CHILDREN = Dataset("index_children", _schema(
    ("index_digest", pa.string(), False), ("child_digest", pa.string(), False),
), ("index_digest", "child_digest"), True,
    "every (index, child) edge of multi-arch indexes: a child listed by two indexes is kept while either is")

NAMESPACES = Dataset("namespaces", _schema(
    ("namespace", pa.string(), False), ("labels", pa.string(), False), ("annotations", pa.string(), False),
), ("namespace",), True, "namespaces with their labels (env, tier, dr) and annotations (legal hold), as JSON")

IMAGE_OBJECTS = Dataset("image_objects", _schema(
    ("digest", pa.string(), False), ("repository", pa.string(), True), ("image_ref", pa.string(), False),
    ("media_type", pa.string(), True), ("config_digest", pa.string(), True), ("size_bytes", pa.int64(), True),
    ("created_at", TS, True), ("architecture", pa.string(), True), ("labels", pa.string(), True),
    ("layers", pa.string(), True), ("manifests", pa.string(), True),
), ("digest",), True,
    "every image.openshift.io Image object, with the repository of the cluster's registry that stores it "
    "(parsed from dockerImageReference; null when that reference points at another registry): images "
    "no tag revision names are still stored, and are what pruning removes. The other columns are what the "
    "object says about the content, as `oc adm prune images` reads it: dockerImageManifestMediaType, "
    "dockerImageMetadata (Id, Size, Created, Architecture, Config.Labels as JSON), dockerImageLayers as JSON "
    "[[digest, size, mediaType], ...] and an index's dockerImageManifests as JSON [[digest, mediaType, "
    "manifestSize], ...]; null where the object does not say")

VALIDATION = Dataset("validation", _schema(
    ("dataset", pa.string(), False), ("expectation", pa.string(), False), ("severity", pa.string(), False),
    ("success", pa.bool_(), False), ("observed", pa.string(), True), ("run_id", pa.string(), False),
), ("dataset", "expectation", "run_id"), False, "data-quality results")

ALL: dict[str, Dataset] = {d.name: d for d in (IMAGES, LAYERS, TAGS, REFERENCES, PULLS_DAILY, SCANS,
                                               STORAGE_USAGE, BUILDS, NAMESPACES, INDEX_CHILDREN, IMAGE_OBJECTS,
                                               VALIDATION)}


def register(dataset: Dataset) -> Dataset:
    """Later stages (gc_scores, forecasts, ...) add their contracts here."""
    ALL[dataset.name] = dataset
    return dataset
