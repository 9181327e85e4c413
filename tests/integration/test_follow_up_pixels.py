"""A follow-up by image_id that needs pixels (a cut-out) uses the entry's kept pixels (issue 24).

The cut-out pixels of a follow-up equal those of the first request (a PNG, an EXIF-rotated
JPEG), and the follow-up never decodes the file again, even one padded to the size limit. The
entry holds embedding + pixels (+ prompts), not the file; the shared tier (a real redis-server)
still gets the file, so another instance's follow-up cut-out is the same image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.cache import EmbeddingCache, entry_bytes_for
from runtime.engine import SamEngine
from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from runtime.shared_config import SharedCacheConfig
from runtime.shared_store import SharedStoreSettings
from runtime.shared_tier import open_shared_tier
from synthetic.test_images import synthetic_image
from tests.hostile_files import padded_to_the_size_limit
from tests.redis_server import redis_server
from tests.reference import encode

CLICK = (Click(50.0, 40.0),)


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> SamEngine:
    return SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime"))


@pytest.fixture()
def extractor(engine: SamEngine) -> HoldExtractor:
    return HoldExtractor(engine, EmbeddingCache(256 << 20), max_clicks=20)


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = np.ascontiguousarray(np.rot90(synthetic_image((300, 480), seed=5), 1))
    return encode(Image.fromarray(rotated), "JPEG", quality=90, exif=exif)


def _padded_png() -> bytes:
    """A 200x300 PNG padded after IEND up to the largest file its pixels justify."""
    return padded_to_the_size_limit(encode(synthetic_image((200, 300), seed=6), "PNG"), (300, 200))


@pytest.mark.parametrize("make_file", [lambda: encode(synthetic_image((240, 320), seed=4), "PNG"),
                                       _exif_rotated_jpeg, _padded_png],
                         ids=["png", "exif_rotated_jpeg", "png_padded_to_limit"])
def test_follow_up_cutout_equals_first_and_decodes_nothing(extractor: HoldExtractor,
                                                             make_file: Callable[[], bytes]) -> None:
    data = make_file()
    first = extractor.extract(ExtractRequest(CLICK, image_bytes=data))
    assert extractor.image_decodes == 1
    follow_up = extractor.extract(ExtractRequest(CLICK, image_id=first.image_id))
    assert first.rgb is not None and follow_up.rgb is not None
    np.testing.assert_array_equal(np.asarray(follow_up.rgb), np.asarray(first.rgb))
    assert (follow_up.rgb.height, follow_up.rgb.width) == first.orig_size_hw
    assert extractor.image_decodes == 1


def test_entry_holds_and_is_charged_for_embedding_and_pixels_not_the_file(extractor: HoldExtractor) -> None:
    data = _padded_png()
    result = extractor.extract(ExtractRequest(CLICK, image_bytes=data))
    entry = extractor.cache.get(str(result.image_id))
    assert entry.upright_pixels is not None and entry.upright_pixels.size == (300, 200)
    assert entry.image_bytes == b""
    assert entry.nbytes == entry_bytes_for((200, 300), entry.prompts.nbytes) == (
        (4 << 20) + 200 * 300 * 3 + entry.prompts.nbytes)
    assert extractor.cache.stats().bytes_held == entry.nbytes


def test_the_shared_tier_gets_the_file_the_local_entry_drops(engine: SamEngine) -> None:
    """Instance A drops the file from its entry; instance B, reading A's entry from the store,
    answers the same cut-out by decoding the published file once."""
    data = _exif_rotated_jpeg()
    with redis_server() as (_proc, url):
        config = SharedCacheConfig(SharedStoreSettings(url, connect_timeout_ms=2000, command_timeout_ms=2000))
        first, second = (HoldExtractor(engine, EmbeddingCache(256 << 20), 20, shared=open_shared_tier(config, engine)[0])
                         for _ in range(2))
        opened = first.extract(ExtractRequest(CLICK, image_bytes=data))
        assert first.cache.get(str(opened.image_id)).image_bytes == b""
        assert first.shared is not None
        first.shared.flush()
        follow_up = second.extract(ExtractRequest(CLICK, image_id=opened.image_id))
    assert follow_up.shared_cache == "hit" and opened.rgb is not None and follow_up.rgb is not None
    np.testing.assert_array_equal(np.asarray(follow_up.rgb), np.asarray(opened.rgb))
    entry = second.cache.get(str(opened.image_id))
    assert entry.image_bytes == data and entry.upright_pixels is None
    assert (first.image_decodes, second.image_decodes) == (1, 1)


def test_only_a_photo_up_to_12_mp_keeps_its_pixels() -> None:
    """Pixels cost H*W*3: a 64 MP upload would take 192 MB of the cache, so above a 12 MP phone
    photo (4032x3024) an entry keeps its file and charges nothing for pixels."""
    from runtime.pixel_store import MAX_KEPT_PIXELS, kept_pixel_bytes, kept_pixels
    from runtime.preprocessors import LoadedImage

    assert kept_pixel_bytes((3024, 4032)) == 3024 * 4032 * 3 and MAX_KEPT_PIXELS == 3024 * 4032
    assert kept_pixel_bytes((3024, 4033)) == 0 and kept_pixel_bytes((8000, 8000)) == 0
    small = LoadedImage.from_pil(Image.new("RGB", (40, 30), (1, 2, 3)))
    assert kept_pixels(small) is small.host  # kept as decoded: no 12 MP copy per first tap
    on_device = LoadedImage((30, 40), device=object(), _to_host=lambda _: pytest.fail("copied back to the host"))
    assert kept_pixels(on_device) is None  # a GPU-decoded photo is never copied back for the cache
