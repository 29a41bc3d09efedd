"""Content-addressed blobs for the sandbox registry, with real sizes and real digests.

A registry serves layers of tens or hundreds of megabytes, and a client checks that the bytes
it receives hash to the digest it asked for. Hashing every simulated layer at start-up would
take minutes, so a synthetic blob is a shared pseudo-random *prefix* followed by a short
blob-specific *tail*. SHA-256 states after each whole multiple of CHUNK bytes of the prefix
are computed once and copied; a blob's digest then costs hashing its tail only (< CHUNK + 32
bytes), and the bytes served are exactly the bytes hashed.
"""
from __future__ import annotations

import hashlib
import random
import threading
from dataclasses import dataclass
from typing import Iterator

CHUNK = 64 * 1024
_SALT_BYTES = 32


@dataclass(frozen=True)
class _Synthetic:
    size: int
    salt: bytes


class BlobStore:
    """Blobs by digest: literal ones (configs, small files) and synthetic layers."""

    def __init__(self, seed: int = 0) -> None:
        rng = random.Random(f"blob-pattern-{seed}")
        self._pattern = rng.randbytes(CHUNK)
        self._prefix_states = [hashlib.sha256()]
        self._lock = threading.Lock()
        self._literal: dict[str, bytes] = {}
        self._synthetic: dict[str, _Synthetic] = {}

    # -- creation ---------------------------------------------------------------------
    def add_bytes(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self._literal[digest] = data
        return digest

    def add_synthetic(self, size: int, salt: str) -> str:
        """A blob of exactly `size` bytes, unique to `salt`; returns its sha256 digest."""
        if size < _SALT_BYTES:
            return self.add_bytes(hashlib.sha256(salt.encode()).digest()[:size])
        salt_bytes = hashlib.sha256(salt.encode()).digest()
        whole_chunks = (size - _SALT_BYTES) // CHUNK
        filler = size - _SALT_BYTES - whole_chunks * CHUNK
        state = self._state_after(whole_chunks).copy()
        state.update(salt_bytes)
        state.update(self._pattern[:filler])
        digest = "sha256:" + state.hexdigest()
        self._synthetic[digest] = _Synthetic(size, salt_bytes)
        return digest

    def derive(self, digest: str, variant: str) -> str:
        """A synthetic blob of the same size as `digest`, unique to (`digest`, `variant`): how a
        replicated team gets layers of its own (see `replicate.py`). Literal blobs have content
        that means something, so their callers re-derive the content instead."""
        blob = self._synthetic[digest]
        return self.add_synthetic(blob.size, f"{blob.salt.hex()}/{variant}")

    def is_synthetic(self, digest: str) -> bool:
        return digest in self._synthetic

    def _state_after(self, chunks: int):
        with self._lock:
            while len(self._prefix_states) <= chunks:
                state = self._prefix_states[-1].copy()
                state.update(self._pattern)
                self._prefix_states.append(state)
            return self._prefix_states[chunks]

    # -- reading ----------------------------------------------------------------------
    def __contains__(self, digest: str) -> bool:
        return digest in self._literal or digest in self._synthetic

    def size(self, digest: str) -> int | None:
        if digest in self._literal:
            return len(self._literal[digest])
        blob = self._synthetic.get(digest)
        return blob.size if blob else None

    def literal(self, digest: str) -> bytes | None:
        return self._literal.get(digest)

    def open(self, digest: str) -> tuple[int, Iterator[bytes]] | None:
        """(size, chunks) whose concatenation hashes to `digest`; None if unknown."""
        if digest in self._literal:
            data = self._literal[digest]
            return len(data), iter((data,))
        blob = self._synthetic.get(digest)
        if blob is None:
            return None
        return blob.size, self._stream(blob)

    def _stream(self, blob: _Synthetic) -> Iterator[bytes]:
        whole_chunks = (blob.size - _SALT_BYTES) // CHUNK
        for _ in range(whole_chunks):
            yield self._pattern
        yield blob.salt + self._pattern[: blob.size - _SALT_BYTES - whole_chunks * CHUNK]

    def __len__(self) -> int:
        return len(self._literal) + len(self._synthetic)
