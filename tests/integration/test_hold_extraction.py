"""HoldExtractor on the tiny model vs the old service's algorithm in PyTorch (SamPredictor)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from segment_anything import SamPredictor

from runtime import image_files
from runtime.cache import EmbeddingCache
from runtime.engine import SamEngine
from runtime.errors import BadRequest, InvalidPoints, UnknownImageId
from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor
from runtime.masks import box_xyxy as mask_box
from runtime.masks import mask_iou
from runtime.settings import RuntimeSettings
from synthetic.test_images import synthetic_image
from tests.reference import encode, old_service_masks


@pytest.fixture(scope="module", params=["onnxruntime", "openvino", "auto", "onnxruntime+graphs"],
                ids=lambda p: f"cpu_engine={p}")
def engine(tiny_model_dir: Path, request: pytest.FixtureRequest) -> SamEngine:
    """Every parity test runs on each CPU engine: ONNX Runtime, OpenVINO, auto's mix, and ONNX Runtime
    with the exported pre/post-processing graphs on the CPU EP (the graphs a GPU runs)."""
    if request.param == "onnxruntime+graphs":
        engine = SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine="onnxruntime", cpu_prepost="graph"))
        assert engine.backends["preprocess"] == engine.backends["postprocess"] == "onnxruntime"
        return engine
    return SamEngine.from_model_dir(tiny_model_dir, RuntimeSettings(cpu_engine=request.param))


@pytest.fixture()
def extractor(engine: SamEngine) -> HoldExtractor:
    return HoldExtractor(engine, EmbeddingCache(256 << 20), max_clicks=20)


def _clicks(size_hw: tuple[int, int], n: int, seed: int = 0) -> tuple[Click, ...]:
    rng = np.random.default_rng(seed)
    return tuple(Click(float(rng.uniform(0, size_hw[1])), float(rng.uniform(0, size_hw[0]))) for _ in range(n))


def _predictor(sam, image: np.ndarray) -> SamPredictor:  # type: ignore[no-untyped-def]
    predictor = SamPredictor(sam)
    with torch.no_grad():
        predictor.set_image(image)
    return predictor


@pytest.mark.parametrize("size_hw", [(1, 1), (180, 300), (900, 500), (600, 800), (1300, 2100)])
def test_matches_old_service_per_click_and_combined(extractor: HoldExtractor, tiny_sam, size_hw) -> None:  # type: ignore[no-untyped-def]
    image = synthetic_image(size_hw, seed=size_hw[0])
    clicks = _clicks(size_hw, 4)
    result = extractor.extract(ExtractRequest(clicks, image_bytes=encode(image), options=ExtractOptions(per_click_masks=True)))
    union, per_click = old_service_masks(tiny_sam, image, [(c.x, c.y) for c in clicks])
    assert result.mask.shape == size_hw and result.out_size_hw == size_hw
    assert result.prompt_masks is not None
    for got, expected in zip(result.prompt_masks, per_click):
        assert mask_iou(got, expected) >= 0.99
    assert mask_iou(result.mask, union) >= 0.99
    assert result.empty == (not union.any())
    np.testing.assert_array_equal(np.asarray(result.rgb), image)


def test_exif_rotated_jpeg_uses_upright_frame(extractor: HoldExtractor, tiny_sam) -> None:  # type: ignore[no-untyped-def]
    upright = synthetic_image((500, 800), seed=9)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(np.rot90(upright, 1))), "JPEG", quality=92, exif=exif)
    reference_image = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert reference_image.shape == (500, 800, 3)
    clicks = _clicks((500, 800), 3, seed=2)
    result = extractor.extract(ExtractRequest(clicks, image_bytes=data))
    union, _ = old_service_masks(tiny_sam, reference_image, [(c.x, c.y) for c in clicks])
    assert result.orig_size_hw == (500, 800)
    assert mask_iou(result.mask, union) >= 0.99


def test_exif_rotated_png_is_checked_in_its_upright_frame(extractor: HoldExtractor) -> None:
    """Pillow writes a PNG's eXIf chunk where the header probe does not read it: the bounds are
    checked again on the decoded, upright size."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(np.ascontiguousarray(np.rot90(synthetic_image((300, 500), seed=10), 1))), "PNG",
                  exif=exif)
    result = extractor.extract(ExtractRequest((Click(450.0, 250.0),), image_bytes=data))  # inside 500 x 300 only
    assert result.orig_size_hw == (300, 500)
    with pytest.raises(InvalidPoints, match="outside the 500x300 image"):
        extractor.extract(ExtractRequest((Click(250.0, 450.0),), image_bytes=data))


def test_negative_points_box_multimask_and_single_mode(extractor: HoldExtractor, tiny_sam) -> None:  # type: ignore[no-untyped-def]
    size_hw = (600, 900)
    image = synthetic_image(size_hw, seed=4)
    data = encode(image)
    predictor = _predictor(tiny_sam, image)
    pos = [Click(100.0, 200.0), Click(700.0, 400.0)]
    neg = Click(400.0, 300.0, label=0)
    box = (50.0, 60.0, 800.0, 550.0)

    def reference(points, labels, box_xyxy=None, multimask=False):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            masks, scores, _ = predictor.predict(point_coords=np.array(points, np.float32), point_labels=np.array(labels),
                                                 box=None if box_xyxy is None else np.array(box_xyxy, np.float32),
                                                 multimask_output=multimask)
        return masks[int(np.argmax(scores))] if multimask else masks[0]

    cases = [
        (ExtractOptions(), None, [reference([[c.x, c.y], [neg.x, neg.y]], [1, 0]) for c in pos]),
        (ExtractOptions(), box, [reference([[c.x, c.y], [neg.x, neg.y]], [1, 0], box) for c in pos]),
        (ExtractOptions(multimask=True), None, [reference([[c.x, c.y], [neg.x, neg.y]], [1, 0], multimask=True) for c in pos]),
        (ExtractOptions(mode="single"), None, [reference([[c.x, c.y] for c in (*pos, neg)], [1, 1, 0])]),
    ]
    for options, box_xyxy, expected_masks in cases:
        result = extractor.extract(ExtractRequest((*pos, neg), image_bytes=data, box_xyxy=box_xyxy,
                                                  options=ExtractOptions(**{**options.__dict__, "per_click_masks": True})))
        assert result.prompt_masks is not None and len(result.prompt_masks) == len(expected_masks)
        for got, expected in zip(result.prompt_masks, expected_masks):
            assert mask_iou(got, expected) >= 0.99, options
        if options.multimask:
            assert all(p.token in (1, 2, 3) for p in result.prompts)


def test_box_without_clicks(extractor: HoldExtractor, tiny_sam) -> None:  # type: ignore[no-untyped-def]
    image = synthetic_image((400, 400), seed=5)
    box = (10.0, 20.0, 300.0, 350.0)
    result = extractor.extract(ExtractRequest((), image_bytes=encode(image), box_xyxy=box))
    with torch.no_grad():
        masks, _, _ = _predictor(tiny_sam, image).predict(box=np.array(box, np.float32), multimask_output=False)
    assert mask_iou(result.mask, masks[0]) >= 0.99


def test_min_area_filter_drops_small_masks_only(extractor: HoldExtractor) -> None:
    size_hw = (600, 800)
    data = encode(synthetic_image(size_hw, seed=6))
    clicks = _clicks(size_hw, 5, seed=3)
    full = extractor.extract(ExtractRequest(clicks, image_bytes=data, options=ExtractOptions(per_click_masks=True)))
    areas = sorted(p.area for p in full.prompts)
    assert full.prompt_masks is not None and all(p.area == int(m.sum()) for p, m in zip(full.prompts, full.prompt_masks))
    assert [p.box_xyxy for p in full.prompts] == [mask_box(m) for m in full.prompt_masks]
    assert any(p.box_xyxy is not None for p in full.prompts)
    threshold = areas[2] if areas[2] > areas[1] else areas[2] + 1
    filtered = extractor.extract(ExtractRequest(clicks, image_bytes=data, options=ExtractOptions(min_area=threshold)))
    expected = np.zeros(size_hw, bool)
    for prompt, mask in zip(full.prompts, full.prompt_masks):
        if prompt.area >= threshold:
            expected |= mask
    np.testing.assert_array_equal(filtered.mask, expected)
    assert [p.kept for p in filtered.prompts] == [p.area >= threshold for p in full.prompts]


def test_everything_filtered_is_a_valid_empty_answer(extractor: HoldExtractor) -> None:
    data = encode(synthetic_image((300, 300), seed=7))
    result = extractor.extract(ExtractRequest(_clicks((300, 300), 3), image_bytes=data,
                                              options=ExtractOptions(min_area=10**9)))
    assert result.empty and not result.mask.any() and result.mask.shape == (300, 300)
    assert not any(p.kept for p in result.prompts) and result.rgb is not None


def test_second_request_skips_the_encoder(extractor: HoldExtractor) -> None:
    data = encode(synthetic_image((500, 700), seed=8))
    clicks = _clicks((500, 700), 2)
    first = extractor.extract(ExtractRequest(clicks, image_bytes=data))
    misses = extractor.cache.stats().misses
    second = extractor.extract(ExtractRequest(clicks, image_bytes=data))
    by_id = extractor.extract(ExtractRequest(clicks, image_id=first.image_id, need_pixels=False))
    stats = extractor.cache.stats()
    assert not first.cache_hit and "encoder_ms" in first.timings_ms
    assert second.cache_hit and by_id.cache_hit and "encoder_ms" not in second.timings_ms
    assert stats.misses == misses and stats.hits >= 2
    np.testing.assert_array_equal(second.mask, first.mask)
    np.testing.assert_array_equal(by_id.mask, first.mask)
    assert by_id.rgb is None


def test_unknown_and_evicted_image_ids(engine: SamEngine) -> None:
    small = HoldExtractor(engine, EmbeddingCache(6 << 20))
    first = small.extract(ExtractRequest(_clicks((200, 200), 1), image_bytes=encode(synthetic_image((200, 200), 1))))
    small.extract(ExtractRequest(_clicks((200, 200), 1), image_bytes=encode(synthetic_image((200, 200), 2))))
    assert small.cache.stats().evictions == 1
    with pytest.raises(UnknownImageId, match="evicted"):
        small.extract(ExtractRequest(_clicks((200, 200), 1), image_id=first.image_id))
    with pytest.raises(UnknownImageId):
        small.extract(ExtractRequest(_clicks((200, 200), 1), image_id="0" * 32))


def test_concurrent_requests_compute_one_embedding(extractor: HoldExtractor) -> None:
    data = encode(synthetic_image((640, 480), seed=11))
    clicks = _clicks((640, 480), 3)
    results: list[np.ndarray] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(extractor.extract(ExtractRequest(clicks, image_bytes=data)).mask)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 6
    assert extractor.cache.stats().misses == 1
    for mask in results[1:]:
        np.testing.assert_array_equal(mask, results[0])


def test_max_output_side_scales_outputs(extractor: HoldExtractor) -> None:
    data = encode(synthetic_image((1200, 1600), seed=12))
    result = extractor.extract(ExtractRequest(_clicks((1200, 1600), 2), image_bytes=data,
                                              options=ExtractOptions(max_output_side=400)))
    assert result.out_size_hw == (300, 400) and result.mask.shape == (300, 400)
    assert result.rgb is not None and result.rgb.size == (400, 300) and result.orig_size_hw == (1200, 1600)


@pytest.mark.parametrize("clicks,box,match", [
    ((Click(5000.0, 10.0),), None, "outside"),
    ((Click(-1.0, 10.0),), None, "outside"),
    ((Click(float("nan"), 10.0),), None, "non-finite"),
    ((Click(1.0, 1.0, label=2),), None, "label"),
    ((Click(1.0, 1.0, label=0),), None, "at least one hold point"),
    ((Click(1.0, 1.0),), (50.0, 50.0, 10.0, 10.0), "box"),
    (tuple(Click(1.0, 1.0) for _ in range(21)), None, "limit of 20"),
])
def test_bad_points_are_refused(extractor: HoldExtractor, clicks, box, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidPoints, match=match):
        extractor.extract(ExtractRequest(clicks, image_bytes=encode(synthetic_image((100, 100), 1)), box_xyxy=box))


def test_image_and_image_id_are_exclusive(extractor: HoldExtractor) -> None:
    with pytest.raises(BadRequest, match="exactly one of an image, an image_id and an embedding"):
        extractor.extract(ExtractRequest((Click(1, 1),)))
    with pytest.raises(BadRequest, match="exactly one of an image, an image_id and an embedding"):
        extractor.extract(ExtractRequest((Click(1, 1),), image_bytes=b"x", image_id="y"))


def test_a_new_jpeg_is_walked_once(extractor: HoldExtractor, monkeypatch: pytest.MonkeyPatch) -> None:
    """The header probe's structure walk (scan, segment and fill-byte limits) is handed to the decode, not
    repeated: one walk per new photo, none for a follow-up by image_id (the photo was checked)."""
    walks: list[int] = []
    real_walk = image_files.check_file_structure

    def counting_walk(data: bytes, max_jpeg_scans: int, max_pixels: int) -> None:
        walks.append(len(data))
        real_walk(data, max_jpeg_scans, max_pixels)

    monkeypatch.setattr(image_files, "check_file_structure", counting_walk)
    data = encode(synthetic_image((480, 640), seed=12), "JPEG")
    first = extractor.extract(ExtractRequest(_clicks((480, 640), 2), image_bytes=data, need_pixels=False))
    assert not first.cache_hit and walks == [len(data)]
    extractor.extract(ExtractRequest(_clicks((480, 640), 2), image_id=first.image_id, need_pixels=False))
    assert walks == [len(data)]
