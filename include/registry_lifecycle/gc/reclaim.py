"""How many bytes a deletion really frees (safety invariant 7).

A registry stores blobs, not images: layers and config blobs are shared between images (a
base image's layers by every application built on it, a dependency layer by successive
builds), and a registry GC frees a blob only when no remaining manifest references it. So the
sum of the deleted images' sizes, which is what most retention tools report, overstates what a
deletion frees; here it is reported only beside the honest figure, as `naive_bytes`.

What counts as a blob of an image: every `layers` row of it, which covers its layers and its
config blob (position -1), and the manifest's own blob, which distribution's GC deletes with
the manifest revision. Measured on a real docker-registry, bytes freed = manifest + config +
unique layers. The manifest's bytes are known for an index (its `size_bytes` is the length of
its manifest); for an image manifest, a `layers` row whose `layer_digest` is the image's own
digest carries them (by convention at position -2). Without such rows the manifest bytes of
image manifests are left out, an under-estimate of about a kilobyte per image.

Dependents follow their parents here as in the plan: children of a deleted index and
referrers of a deleted image count as deleted unless another kept parent, or the caller's
`held`, keeps them.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..sources.registry import INDEX_TYPES
from .features import distinct
from .protections import ManifestGraph

MANIFEST_POSITION = -2      # a `layers` row for the manifest's own blob (layer_digest == image_digest)


@dataclass(frozen=True)
class Reclaim:
    """What deleting a set of images frees, honestly and naively counted."""

    honest_bytes: int           # blobs no kept manifest references, each counted once
    naive_bytes: int            # sum of size_bytes of the deleted images (shared layers counted again and again)
    shared_bytes_kept: int      # blobs of deleted images that a kept manifest still references, each once
    blobs_freed: int


def _image_blobs(images: pd.DataFrame | None, layers: pd.DataFrame) -> pd.DataFrame:
    """(image_digest, layer_digest, size_bytes): layers, configs and known manifest blobs."""
    blobs = layers[["image_digest", "layer_digest", "size_bytes"]]
    if images is not None and {"media_type", "size_bytes"} <= set(images.columns):
        indexes = images[images["media_type"].isin(INDEX_TYPES).to_numpy(dtype=bool)]
        own_rows = layers.loc[(layers["image_digest"] == layers["layer_digest"]).to_numpy(dtype=bool), "image_digest"]
        if len(own_rows):
            indexes = indexes[~pd.Index(indexes["digest"].astype(object)).isin(pd.Index(own_rows.astype(object)))]
        blobs = pd.concat([blobs, pd.DataFrame({"image_digest": indexes["digest"], "layer_digest": indexes["digest"],
                                                "size_bytes": indexes["size_bytes"]})], ignore_index=True)
    return blobs


class BlobGraph:
    """Which image references which blob, as integer codes, for fast repeated questions.

    Built once per snapshot: the plan asks several questions (exclusive bytes of every image,
    shares of a candidate set, the reclaim of the final set) of a few million (image, blob)
    pairs, and numpy on codes answers each in well under a second. Images are numbered in the
    order of the `images` frame (so a boolean mask over its rows can be passed directly),
    followed by any image that only `layers` mentions, which always counts as kept.
    """

    def __init__(self, images: pd.DataFrame | None, layers: pd.DataFrame) -> None:
        blobs = _image_blobs(images, layers)
        known = images["digest"].astype(object) if images is not None else pd.Series([], dtype=object)
        image_code, uniques = pd.factorize(pd.concat([known, blobs["image_digest"].astype(object)], ignore_index=True))
        self.images = pd.Index(uniques, dtype=object)
        # Where each image stands in digest order: remainders of a split go to the smallest digests.
        self.digest_rank = np.empty(len(self.images), dtype=np.int64)
        self.digest_rank[pc.sort_indices(pa.array(uniques, type=pa.string())).to_numpy()] = np.arange(len(self.images))
        pair_image = image_code[len(known):]
        blob_code, self.blobs = pd.factorize(blobs["layer_digest"].astype(object))
        self.blob_size = np.zeros(len(self.blobs), dtype=np.int64)
        self.blob_size[blob_code] = blobs["size_bytes"].to_numpy(dtype=np.int64)
        width = max(len(self.blobs), 1)
        pairs = distinct(pair_image.astype(np.int64) * width + blob_code)
        self.pair_image, self.pair_blob = pairs // width, pairs % width
        self.naive_size = np.zeros(len(self.images), dtype=np.int64)
        if images is not None:
            self.naive_size[image_code[:len(known)]] = images["size_bytes"].to_numpy(dtype=np.int64)

    def mask(self, digests: Iterable[str] | np.ndarray) -> np.ndarray:
        """A boolean mask over the images from digests, or from a mask over the `images` rows."""
        result = np.zeros(len(self.images), dtype=bool)
        if isinstance(digests, np.ndarray) and digests.dtype == bool:
            result[:len(digests)] = digests
            return result
        codes = self.images.get_indexer(pd.Index(list(digests), dtype=object))
        result[codes[codes >= 0]] = True
        return result

    def _freed_pairs(self, doomed: np.ndarray, kept: np.ndarray | None = None) -> np.ndarray:
        """Pairs of doomed images whose blob no kept image references (kept: all the others)."""
        kept = ~doomed if kept is None else kept
        kept_blob = np.zeros(len(self.blobs), dtype=bool)
        kept_blob[self.pair_blob[kept[self.pair_image]]] = True
        return doomed[self.pair_image] & ~kept_blob[self.pair_blob]

    def reclaim(self, doomed_digests: Iterable[str] | np.ndarray, kept: Iterable[str] | np.ndarray | None = None
                ) -> Reclaim:
        """The bytes deleting exactly `doomed_digests` frees (no dependents added); `kept`
        defaults to every other image."""
        doomed = self.mask(doomed_digests)
        kept_mask = None if kept is None else self.mask(kept)
        freed = distinct(self.pair_blob[self._freed_pairs(doomed, kept_mask)])
        touched = distinct(self.pair_blob[doomed[self.pair_image]])
        shared = np.setdiff1d(touched, freed, assume_unique=True)
        return Reclaim(honest_bytes=int(self.blob_size[freed].sum()), naive_bytes=int(self.naive_size[doomed].sum()),
                       shared_bytes_kept=int(self.blob_size[shared].sum()), blobs_freed=int(len(freed)))

    def exclusive_bytes(self) -> pd.Series:
        """Per image: the bytes deleting it alone would free (blobs no other image references)."""
        references = np.bincount(self.pair_blob, minlength=len(self.blobs))
        alone = references[self.pair_blob] == 1
        total = np.bincount(self.pair_image[alone], weights=self.blob_size[self.pair_blob[alone]],
                            minlength=len(self.images))
        return pd.Series(np.rint(total).astype(np.int64), index=self.images, name="unique_bytes")

    def shares(self, doomed_digests: Iterable[str] | np.ndarray) -> pd.Series:
        """Per image, its share of the bytes deleting all of `doomed_digests` frees (0 if not doomed).

        A freed blob referenced by several doomed images is split evenly between them (the
        remainder going to the smallest digests), so the shares are whole bytes and add up to
        `reclaim(doomed).honest_bytes` exactly: a plan's rows sum to its total, and ranking
        by share credits a layer shared by ten feature builds to all ten, where "exclusive"
        bytes would credit it to none.
        """
        doomed = self.mask(doomed_digests)
        freed_pairs = np.flatnonzero(self._freed_pairs(doomed))
        image, blob = self.pair_image[freed_pairs], self.pair_blob[freed_pairs]
        order = np.lexsort((self.digest_rank[image], blob))
        image, blob = image[order], blob[order]
        holders = np.bincount(blob, minlength=len(self.blobs))
        position = np.arange(len(blob)) - np.searchsorted(blob, blob, side="left")
        size = self.blob_size[blob]
        share = size // holders[blob] + (position < size % holders[blob])
        total = np.bincount(image, weights=share, minlength=len(self.images))
        return pd.Series(np.rint(total).astype(np.int64), index=self.images, name="bytes")


def unique_bytes(kept: pd.DataFrame, doomed: pd.DataFrame, layers: pd.DataFrame) -> int:
    """Bytes a registry GC really frees: blobs of doomed images that no kept image shares.

    `kept` and `doomed` are images frames (a `digest` column; with `media_type` and
    `size_bytes`, index manifests count their own bytes too).
    """
    with_sizes = {"media_type", "size_bytes"} <= set(kept.columns) & set(doomed.columns)
    images = pd.concat([kept, doomed], ignore_index=True)
    graph = BlobGraph(images if with_sizes else images[["digest"]].assign(size_bytes=0), layers)
    return graph.reclaim(doomed["digest"], kept=kept["digest"]).honest_bytes


def with_dependents(images: pd.DataFrame, doomed_digests: Iterable[str] | np.ndarray, held: Iterable[str] = (),
                    index_children: pd.DataFrame | None = None, *, graph: ManifestGraph | None = None) -> np.ndarray:
    """A mask over `images`: `doomed_digests` plus the children and referrers that go with them.

    Without `index_children`, a child stays while an index its repository keeps might list it.
    `graph`, when given, is `ManifestGraph(images, index_children=index_children)` built once
    by a caller that asks about many sets of the same images (the backtest's policies).
    """
    graph = graph or ManifestGraph(images, index_children=index_children)
    doomed = graph.mask(doomed_digests)
    holds = graph.mask(held)
    if not graph.listing_complete:
        holds = holds | graph.possibly_listed(~doomed)
    followers = graph.going_with(doomed, holds)
    return doomed | graph.mask(followers["digest"])


def reclaim(images: pd.DataFrame, layers: pd.DataFrame, doomed_digests: Iterable[str], *,
            held: Iterable[str] = (), index_children: pd.DataFrame | None = None) -> Reclaim:
    """Honest and naive bytes of deleting `doomed_digests` and the dependents that go with them.

    Index children of a doomed index, and referrers of a doomed image, count as doomed unless
    another kept parent lists them or they are in `held` (kept on their own: tagged,
    referenced by a workload, scored as likely reused). `index_children` (index_digest,
    child_digest) lists every index of a child where `images.index_digest` names only one.
    Every other image counts as kept.
    """
    images = images.drop_duplicates("digest")
    return BlobGraph(images, layers).reclaim(with_dependents(images, doomed_digests, held, index_children))
