"""What the cluster's Image objects say about image content, kept as columns until rows are written.

With `sources.registry.images_from_cluster`, an image whose Image object describes everything
the `images` and `layers` rows need is never fetched from the registry (see
`RegistryClient.extract`). At scale L that is ~460,000 images, so they stay in the columns the
cluster step staged (`image_objects`) and become rows directly: building a manifest object per
image and turning it back into rows cost ~30 s of the extraction's 5-minute budget.

An Image object is left to the registry when it does not describe everything: an index (its
own size is its manifest's length), an OCI artifact (its `subject` is only in the manifest), or
an object without layers, config or size (an image imported by reference carries no metadata),
or whose Size is below the sum of its layers (not to be trusted).

What the cluster cannot say, and the price: the manifest blob itself (1-3 KiB per image, the
`layers` row at position -2) is unknown, which undercounts a GC's bytes by that much per
image; and the Image API has no OS field, so `os` stays null.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from .image_refs import DIGEST
from .registry import IMAGE_TYPES

# The OCI 1.1 empty descriptor: the config of an artifact (SBOM, attestation), never of an image.
OCI_EMPTY_CONFIG = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
COLUMNS = ("digest", "media_type", "config_digest", "size_bytes", "created_at", "architecture", "labels", "layers")


class DescribedImages:
    """digest -> the `images` row fields and `layers` rows an Image object gives for it."""

    def __init__(self) -> None:
        self._row: dict[str, int] = {}
        self._fields: list[tuple[str, str, int, datetime | None, str | None, str]] = []
        self._layers: list[list[tuple[str, int]]] = []

    @classmethod
    def from_image_objects(cls, objects: pd.DataFrame) -> DescribedImages:
        """From `image_objects` rows (the dataset's columns): those that describe their content."""
        described = cls()
        config = objects["config_digest"]
        candidates = (objects["media_type"].isin(list(IMAGE_TYPES)) & config.notna() & (config != "")
                      & (config != OCI_EMPTY_CONFIG) & objects["size_bytes"].notna() & objects["layers"].notna()
                      & (objects["layers"] != ""))
        # Python values through Arrow: iterating pandas columns (Arrow strings, Timestamps) costs
        # more than describing the images.
        columns = [pa.array(objects.loc[candidates, name], from_pandas=True).to_pylist() for name in COLUMNS]
        for digest, media_type, config, size, created, architecture, labels, layers_json in zip(*columns):
            layers = _layers(layers_json)
            if layers is None or sum(layer_size for _, layer_size in layers) > size:
                continue
            described._row[digest] = len(described._fields)
            if created is not None and created.year <= 1:     # Go's zero time: unknown
                created = None
            described._fields.append((media_type, config, size, created, architecture or None, labels or "{}"))
            described._layers.append(layers)
        return described

    def __contains__(self, digest: object) -> bool:
        return digest in self._row

    def __len__(self) -> int:
        return len(self._row)

    def image_fields(self, digest: str) -> dict[str, Any]:
        """The `images` columns the Image object gives (not repository, subject or index)."""
        media_type, config, size, created, architecture, labels = self._fields[self._row[digest]]
        return {"media_type": media_type, "size_bytes": size, "config_digest": config, "created_at": created,
                "architecture": architecture, "os": None, "labels": labels}

    def layer_rows(self, digest: str) -> list[tuple[str, int, int]]:
        """(blob digest, size, position) of the config (-1) and each layer (0, 1, ...); OpenShift's
        Size sums config and layers, so the config blob's size is what the layers leave."""
        row = self._row[digest]
        layers = self._layers[row]
        config_size = self._fields[row][2] - sum(size for _, size in layers)
        return [(self._fields[row][1], config_size, -1)] + [(layer, size, position)
                                                             for position, (layer, size) in enumerate(layers)]


def _layers(layers_json: str) -> list[tuple[str, int]] | None:
    """`[[digest, size, media type], ...]` as staged by the cluster step; None if any entry is not
    a digest with a size."""
    try:
        layers = [(str(digest), int(size)) for digest, size, _ in json.loads(layers_json)]
    except (ValueError, TypeError):
        return None
    if not all(DIGEST.match(digest) and size >= 0 for digest, size in layers):
        return None
    return layers
