"""The byte format of one embedding in the shared (Valkey/Redis) tier, and its checks.

An entry is ``header | embedding float32 bytes | image bytes``. The header carries a magic
tag, the model identity (manifest hash + weights hash, 32 bytes SHA-256), the original and
resized sizes (H, W pixels), the byte lengths of both payloads and a SHA-256 of the payloads.
Decoding returns ``None`` for anything wrong (short, wrong magic, foreign model, wrong
length, bad checksum): the caller treats it as a miss, never as an answer.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

MAGIC = b"SAMEMB1\x00"
#: magic(8) model_identity(32) orig_h orig_w input_h input_w (4 x uint32) emb_len img_len
#: (2 x uint64) checksum(32)
_HEADER = struct.Struct("<8s32s4I2Q32s")
#: Bytes of one embedding, float32 1x256x64x64.
EMBEDDING_BYTES = 256 * 64 * 64 * 4


def model_identity(manifest_sha256_hex: str, weights_sha256_hex: str) -> bytes:
    """32 bytes naming one model: two versions or A/B variants never share entries."""
    return hashlib.sha256(f"{manifest_sha256_hex}:{weights_sha256_hex}".encode()).digest()


@dataclass(frozen=True)
class SharedEntry:
    """One decoded entry: ``embedding`` is the exact float32 1x256x64x64 bytes (C order)."""

    embedding: bytes
    orig_size_hw: tuple[int, int]
    input_size_hw: tuple[int, int]
    image_bytes: bytes


def _payload_checksum(embedding: bytes, image_bytes: bytes) -> bytes:
    digest = hashlib.sha256(embedding)
    digest.update(image_bytes)
    return digest.digest()


def write_entry(identity: bytes, entry: SharedEntry) -> bytes:
    """The stored value for ``entry`` under the model ``identity`` (32 bytes)."""
    header = _HEADER.pack(
        MAGIC, identity, *entry.orig_size_hw, *entry.input_size_hw,
        len(entry.embedding), len(entry.image_bytes),
        _payload_checksum(entry.embedding, entry.image_bytes),
    )
    return header + entry.embedding + entry.image_bytes


def encoded_bytes(entry: SharedEntry) -> int:
    """The stored value's length for ``entry``: header, embedding and image bytes."""
    return _HEADER.size + len(entry.embedding) + len(entry.image_bytes)


def read_entry(identity: bytes, value: bytes, embedding_bytes: int = EMBEDDING_BYTES
                 ) -> SharedEntry | None:
    """The entry in ``value`` if it is whole, ours and for model ``identity``; else ``None``."""
    if len(value) < _HEADER.size:
        return None
    magic, ident, oh, ow, ih, iw, emb_len, img_len, checksum = _HEADER.unpack_from(value)
    if magic != MAGIC or ident != identity or emb_len != embedding_bytes:
        return None
    if len(value) != _HEADER.size + emb_len + img_len:
        return None
    embedding = value[_HEADER.size:_HEADER.size + emb_len]
    image_bytes = value[_HEADER.size + emb_len:]
    if _payload_checksum(embedding, image_bytes) != checksum:
        return None
    return SharedEntry(embedding, (oh, ow), (ih, iw), image_bytes)
