"""Inventory and change: what the registry held when the period began and when it ended, and
what was added and removed in between.

"Images" are manifests people push and pull: referrers (signatures, SBOMs, attestations) and
the per-platform children of a multi-arch index are counted apart. Bytes are what the registry
stores, each blob once however many images share it, which is also what a deletion can free.
"""
from __future__ import annotations

import io

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...config import Policy
from ..evidence import PeriodData
from ..frames import repository_namespace, top_level_images, unique_blob_bytes
from ..section import NO_DATA, Chart, Fact, Section, Table

GIB = 2**30


def _state(data: PeriodData, ref) -> dict:
    images = data.snapshot("images", ref)
    layers = data.snapshot("layers", ref)
    children = data.snapshot("index_children", ref)
    top = top_level_images(images, children)
    return {"images": images, "layers": layers, "top": top}


def namespace_table(start: dict, end: dict) -> pd.DataFrame:
    """Per namespace: repositories and images at both ends, added, removed, stored bytes at the end."""
    def per_namespace(state: dict, suffix: str) -> pd.DataFrame:
        top = state["top"].assign(namespace=repository_namespace(state["top"]["repository"]))
        layers = state["layers"]
        owner = state["images"].set_index("digest")["repository"]
        blobs = layers.assign(namespace=repository_namespace(layers["image_digest"].map(owner).fillna("")))
        stored = blobs.drop_duplicates(["namespace", "layer_digest"]).groupby("namespace")["size_bytes"].sum()
        table = top.groupby("namespace").agg(repositories=("repository", "nunique"), images=("digest", "size"))
        return table.join(stored.rename("stored_bytes"), how="outer").add_suffix(suffix)

    table = per_namespace(start, "_start").join(per_namespace(end, "_end"), how="outer")
    start_top, end_top = start["top"], end["top"]
    added = end_top[~end_top["digest"].isin(start_top["digest"])]
    removed = start_top[~start_top["digest"].isin(end_top["digest"])]
    table["added"] = repository_namespace(added["repository"]).value_counts()
    table["removed"] = repository_namespace(removed["repository"]).value_counts()
    table = table.fillna(0).astype("int64").reset_index(names="namespace")
    columns = ["namespace", "repositories_end", "images_start", "images_end", "added", "removed", "stored_bytes_end"]
    return table[columns].sort_values(["stored_bytes_end", "namespace"], ascending=[False, True]).reset_index(drop=True)


def trend(data: PeriodData) -> pd.DataFrame:
    """Images and stored bytes at every snapshot of the period."""
    rows = []
    for ref in data.snapshot_refs_in_period():
        state = _state(data, ref)
        rows.append({"day": ref.day, "images": len(state["top"]), "manifests": len(state["images"]),
                     "stored_bytes": unique_blob_bytes(state["layers"])})
    return pd.DataFrame(rows, columns=["day", "images", "manifests", "stored_bytes"])


def chart(points: pd.DataFrame) -> bytes:
    figure = Figure(figsize=(8, 3), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    days = pd.to_datetime(points["day"])
    axes.plot(days, points["stored_bytes"] / GIB, marker="o", color="tab:blue", label="stored GiB")
    axes.set_ylabel("stored GiB")
    axes.grid(alpha=0.3)
    other = axes.twinx()
    other.plot(days, points["images"], marker="s", color="tab:green", label="images")
    other.set_ylabel("images")
    axes.set_title("Registry contents at each snapshot of the period")
    figure.legend(loc="lower right")
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def build(data: PeriodData, policy: Policy) -> Section:
    section = Section("inventory", "Inventory and change",
                      "Repositories, images and stored bytes when the period began and when it ended, and what was "
                      "added and removed in between (by comparing the two snapshots).",
                      datasets=["images", "layers", "index_children"])
    start_ref, end_ref = data.start_snapshot, data.end_snapshot
    if end_ref is None:
        section.no_data("No data: no cluster snapshot was stored in this period.")
        section.status = NO_DATA
        return section
    start, end = _state(data, start_ref), _state(data, end_ref)
    start_top, end_top = start["top"], end["top"]
    added = end_top[~end_top["digest"].isin(start_top["digest"])]
    removed = start_top[~start_top["digest"].isin(end_top["digest"])]
    start_blobs = set(start["layers"]["layer_digest"])
    end_blobs = set(end["layers"]["layer_digest"])
    added_blobs = end["layers"][~end["layers"]["layer_digest"].isin(start_blobs)]
    removed_blobs = start["layers"][~start["layers"]["layer_digest"].isin(end_blobs)]
    referrers = end["images"]["subject_digest"].notna()
    section.facts += [
        Fact("repositories_start", "Repositories at the start", int(start_top["repository"].nunique()),
             detail=f"snapshot of {start_ref.day}"),
        Fact("repositories_end", "Repositories at the end", int(end_top["repository"].nunique()),
             detail=f"snapshot of {end_ref.day}"),
        Fact("images_start", "Images at the start", len(start_top)),
        Fact("images_end", "Images at the end", len(end_top),
             detail=f"{len(end['images'])} manifests in all, {int(referrers.sum())} of them signatures, SBOMs or "
                    "attestations, the rest children of multi-arch indexes"),
        Fact("images_added", "Images added in the period", len(added)),
        Fact("images_removed", "Images removed in the period", len(removed)),
        Fact("bytes_start", "Stored bytes at the start", unique_blob_bytes(start["layers"]), "bytes"),
        Fact("bytes_end", "Stored bytes at the end", unique_blob_bytes(end["layers"]), "bytes",
             "each blob counted once, as the registry stores it"),
        Fact("bytes_added", "Bytes of blobs added", unique_blob_bytes(added_blobs), "bytes"),
        Fact("bytes_removed", "Bytes of blobs removed", unique_blob_bytes(removed_blobs), "bytes"),
    ]
    if start_ref.day == end_ref.day:
        section.no_data(f"Only one snapshot ({end_ref.day}) covers the period: no change can be measured.")
    section.tables.append(Table("inventory-namespaces", "Per namespace", namespace_table(start, end)))
    points = trend(data)
    section.tables.append(Table("inventory-snapshots", "At each snapshot", points, shown=len(points)))
    if len(points) >= 2:
        section.charts.append(Chart("inventory-trend", "Images and stored bytes per snapshot", chart(points)))
    return section
