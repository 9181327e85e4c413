"""The shared tier's entry format: exact round trip; garbage and foreign models are misses."""

from __future__ import annotations

import numpy as np

from runtime.shared_entry import SharedEntry, model_identity, read_entry, write_entry

_OURS = model_identity("a" * 64, "b" * 64)
_OTHER = model_identity("a" * 64, "c" * 64)
_SMALL = 16 * 4


def _entry() -> SharedEntry:
    emb = np.random.default_rng(3).standard_normal(16).astype(np.float32)
    return SharedEntry(emb.tobytes(), (1200, 1600), (768, 1024), b"\xff\xd8photo")


def test_round_trip_is_exact() -> None:
    entry = _entry()
    assert read_entry(_OURS, write_entry(_OURS, entry), _SMALL) == entry


def test_foreign_model_is_a_miss() -> None:
    assert read_entry(_OTHER, write_entry(_OURS, _entry()), _SMALL) is None


def test_garbage_is_a_miss() -> None:
    value = write_entry(_OURS, _entry())
    flipped = value[:-3] + bytes([value[-3] ^ 1]) + value[-2:]
    for bad in (b"", b"junk", value[:-1], value + b"x", flipped):
        assert read_entry(_OURS, bad, _SMALL) is None
    assert read_entry(_OURS, value, _SMALL * 2) is None
