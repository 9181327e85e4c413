"""A follow-up by image_id that needs pixels (a cut-out) uses the entry's kept pixels (issue 24).

The cut-out pixels of a follow-up equal those of the first request (a PNG, an EXIF-rotated
JPEG), and the follow-up never decodes the file again, even one padded to the size limit.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime import holds
from runtime.cache import EmbeddingCache
from runtime.engine import SamEngine
from runtime.file_structure import MAX_FILE_BYTES_PER_PIXEL, MAX_FILE_OVERHEAD_BYTES
from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode


@pytest.fixture(scope="module")
def extractor(tiny_model_dir: Path) -> HoldExtractor:
    engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime"))
    return HoldExtractor(engine, EmbeddingCache(256 << 20), max_clicks=20)


@pytest.fixture()
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the real decodes ``HoldExtractor`` runs on a cached entry's file (each still runs)."""
    calls: list[int] = []
    real: Callable[..., Any] = holds.decode_image

    def counting(data: bytes, *args: Any, **kwargs: Any) -> Image.Image:
        calls.append(len(data))
        return real(data, *args, **kwargs)  # type: ignore[no-any-return]

    monkeypatch.setattr(holds, "decode_image", counting)
    return calls


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = np.ascontiguousarray(np.rot90(synthetic_image((300, 480), seed=5), 1))
    return encode(Image.fromarray(rotated), "JPEG", quality=90, exif=exif)


def _padded_png() -> bytes:
    """A 200x300 PNG padded after IEND up to the largest file its pixels justify."""
    data = encode(synthetic_image((200, 300), seed=6), "PNG")
    return data + b"\0" * (MAX_FILE_OVERHEAD_BYTES + MAX_FILE_BYTES_PER_PIXEL * 200 * 300 - len(data))


@pytest.mark.parametrize("make_file", [lambda: encode(synthetic_image((240, 320), seed=4), "PNG"),
                                       _exif_rotated_jpeg, _padded_png],
                         ids=["png", "exif_rotated_jpeg", "png_padded_to_limit"])
def test_follow_up_cutout_equals_first_and_decodes_nothing(extractor: HoldExtractor, decode_calls: list[int],
                                                             make_file: Callable[[], bytes]) -> None:
    data = make_file()
    first = extractor.extract(ExtractRequest((Click(50.0, 40.0),), image_bytes=data))
    follow_up = extractor.extract(ExtractRequest((Click(50.0, 40.0),), image_id=first.image_id))
    assert first.rgb is not None and follow_up.rgb is not None
    np.testing.assert_array_equal(np.asarray(follow_up.rgb), np.asarray(first.rgb))
    assert (follow_up.rgb.height, follow_up.rgb.width) == first.orig_size_hw
    assert decode_calls == []


def test_entry_is_charged_for_its_kept_pixels(extractor: HoldExtractor) -> None:
    data = encode(synthetic_image((240, 320), seed=7), "PNG")
    result = extractor.extract(ExtractRequest((Click(10.0, 10.0),), image_bytes=data))
    entry = extractor.cache.get(result.image_id)
    assert entry.upright_pixels is not None
    assert entry.nbytes == entry.embedding_bytes + len(data) + len(entry.upright_pixels)
