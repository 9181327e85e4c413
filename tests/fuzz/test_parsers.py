"""Property-based fuzzing of every parser: only ServiceErrors (4xx), never a crash or a hang."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from runtime.errors import ServiceError
from runtime.image_files import read_image
from runtime.jpeg_structure import count_jpeg_structure
from serving.contract import parse_custom_attributes, parse_json, parse_raw_image, parse_zip

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])

JSON_LEAVES = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.integers() | st.integers(10**300, 10**400)
               | st.floats(allow_nan=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=25)
CONTRACT_KEYS = st.sampled_from(["image_base64", "image_id", "points", "box", "mode", "multimask", "min_area",
                                 "close_session", "outputs", "x", "y", "label", "result_format", "max_side"])
CONTRACT_DOCS = st.dictionaries(CONTRACT_KEYS, JSON_VALUES | st.lists(st.dictionaries(CONTRACT_KEYS, JSON_LEAVES), max_size=4),
                                max_size=6)


def _png(width: int = 24, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


VALID_IMAGES = [_png()]
for fmt in ("JPEG", "WEBP", "GIF", "BMP", "TIFF"):
    buffer = io.BytesIO()
    Image.open(io.BytesIO(VALID_IMAGES[0])).convert("RGB").save(buffer, fmt)
    VALID_IMAGES.append(buffer.getvalue())


@FUZZ
@given(CONTRACT_DOCS)
def test_json_contract_answers_or_refuses(document: dict) -> None:  # type: ignore[type-arg]
    try:
        parse_json(json.dumps(document))
    except ServiceError:
        pass


@FUZZ
@given(st.binary(max_size=512))
def test_json_bytes_answer_or_refuse(body: bytes) -> None:
    try:
        parse_json(body)
    except ServiceError:
        pass


@FUZZ
@given(st.text(max_size=300))
def test_custom_attributes_answer_or_refuse(text: str) -> None:
    try:
        parse_custom_attributes(text)
        parse_raw_image(VALID_IMAGES[0], text)
    except ServiceError:
        pass


@FUZZ
@given(st.binary(max_size=1024))
def test_zip_bytes_answer_or_refuse(body: bytes) -> None:
    try:
        parse_zip(b"PK\x03\x04" + body, 16, 1 << 20)
    except ServiceError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["image.bin", "points.json", "../x", "a/b", ""]), st.binary(max_size=64),
                       max_size=4), st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
def test_zip_archives_answer_or_refuse(entries: dict[str, bytes], compression: int) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            if name:
                archive.writestr(name, data)
    try:
        parse_zip(buffer.getvalue(), 16, 1 << 20)
    except ServiceError:
        pass


@FUZZ
@given(st.sampled_from(range(len(VALID_IMAGES))), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                            max_size=8), st.integers(0, 10**6))
def test_mutated_images_decode_or_are_refused(which: int, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(VALID_IMAGES[which])
    for position, value in flips:
        data[position % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))]
    try:
        image = read_image(bytes(data), max_pixels=4_000_000)
        assert image.mode == "RGB"
    except ServiceError:
        pass


def _valid_zip(compression: int) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        archive.writestr("image.bin", VALID_IMAGES[0])
        archive.writestr("points.json", json.dumps({"points": [{"x": 1, "y": 2}]}))
    return buffer.getvalue()


VALID_ZIPS = [_valid_zip(c) for c in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)]


@FUZZ
@given(st.sampled_from(range(len(VALID_ZIPS))), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                          min_size=1, max_size=8))
def test_mutated_zips_answer_or_refuse(which: int, flips: list[tuple[int, int]]) -> None:
    """Mutation fuzzing of real archives (how the corrupt-member and version-0xFF 500s were found)."""
    data = bytearray(VALID_ZIPS[which])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        parse_zip(bytes(data), 16, 1 << 20)
    except ServiceError:
        pass


@FUZZ
@given(st.binary(max_size=2048), st.integers(0, 5))
def test_jpeg_structure_walk_never_fails(tail: bytes, limit: int) -> None:
    structure = count_jpeg_structure(b"\xff\xd8" + tail, stop_after_scans=limit)
    assert 0 <= structure.scans <= limit + 1 and structure.segments >= 0
