"""Pausing Python's cyclic garbage collector while a source builds millions of objects.

An extraction decodes a cluster's lists into millions of dicts and lists that stay alive until
its frames are built. CPython runs a full collection whenever the objects that survived young
collections since the last one reach a quarter of those alive, and every full collection walks
all of them: on the L sandbox that cost more than decoding the JSON (300 pages of 500 Image
objects decoded and kept: 15 s with the collector, 6 s without). Decoded JSON and the rows made
from it hold no reference cycles, so reference counting frees them as before; only cycles made
meanwhile (rare: a traceback, a closure) wait for the first collection after the pause.
"""
from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block; the collector is left as it was found
    (a nested pause, or a caller that disabled it on purpose, keeps it off)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
