"""Reused prompts (``runtime.prompt_reuse``): a resent click skips the decoder, the answer does not change.

Two extractors over one model, the prompt cache on and off, answer the same request sequence
(reordered, repeated, mixed new and old clicks, a negative click, multimask); every answer must
be byte-equal. On the tiny export and on the cone model (``tests.cone_model``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.holds import Click, ExtractOptions, ExtractRequest, HoldExtractor, HoldResult, PromptMode
from runtime.settings import RuntimeSettings

SIZE_HW = (480, 640)
TAPS = tuple(Click(30.0 + 29 * i, 40.0 + 19 * i) for i in range(21))


def photo_png() -> bytes:
    pixels = np.random.default_rng(7).integers(0, 255, (*SIZE_HW, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def extractor(model_dir: Path, prompt_bytes: int) -> HoldExtractor:
    return HoldExtractor.from_model_dir(model_dir, RuntimeSettings(prompt_cache_bytes_per_image=prompt_bytes))


def ask(extractor_: HoldExtractor, clicks: tuple[Click, ...], multimask: bool = False,
        mode: PromptMode = "per_click") -> HoldResult:
    options = ExtractOptions(mode=mode, multimask=multimask, per_click_masks=True)
    return extractor_.extract(ExtractRequest(clicks, image_bytes=photo_png(), options=options, need_pixels=False))


def assert_same_answer(on: HoldResult, off: HoldResult) -> None:
    assert on.union.dense().tobytes() == off.union.dense().tobytes()
    assert on.masks is not None and off.masks is not None
    assert [m.dense().tobytes() for m in on.masks] == [m.dense().tobytes() for m in off.masks]
    assert [(p.score, p.token, p.area, p.box_xyxy, p.kept) for p in on.prompts] == \
        [(p.score, p.token, p.area, p.box_xyxy, p.kept) for p in off.prompts]


SEQUENCE: list[tuple[tuple[Click, ...], bool, PromptMode]] = [
    (TAPS[:3], False, "per_click"),
    ((TAPS[2], TAPS[0], TAPS[0], TAPS[4], TAPS[1]), False, "per_click"),  # reordered, repeated, one new
    ((TAPS[1], Click(200.0, 200.0, 0), TAPS[3]), False, "per_click"),  # a negative joins every prompt: all new
    ((TAPS[4], TAPS[2]), True, "per_click"),  # multimask picks another token of the stored logits
    ((TAPS[5], TAPS[6]), False, "single"),
    ((TAPS[5], Click(TAPS[6].x, TAPS[6].y, 0)), False, "single"),  # the same points, another label: new
]


@pytest.mark.parametrize("model", ["tiny_model_dir", "cone_model_dir"])
def test_answers_are_byte_equal_with_the_prompt_cache_on_and_off(model: str, request: pytest.FixtureRequest) -> None:
    model_dir = request.getfixturevalue(model)
    on, off = extractor(model_dir, 64 << 20), extractor(model_dir, 0)
    decoded = []
    for clicks, multimask, mode in SEQUENCE:
        answer_on = ask(on, clicks, multimask, mode)
        assert_same_answer(answer_on, ask(off, clicks, multimask, mode))
        decoded.append((answer_on.timings_ms["prompts_decoded"], answer_on.timings_ms["prompts_reused"]))
    assert decoded == [(3, 0), (1, 4), (2, 0), (0, 2), (1, 0), (1, 0)]
    assert off.prompts.stats()["prompts_reused"] == 0


def test_twenty_resent_taps_and_one_new_decode_one_prompt(cone_model_dir: Path) -> None:
    on = extractor(cone_model_dir, 64 << 20)
    ask(on, TAPS[:20])
    answer = ask(on, TAPS)
    assert (answer.timings_ms["prompts_decoded"], answer.timings_ms["prompts_reused"]) == (1, 20)
    assert on.prompts.stats() == {"enabled": True, "max_bytes_per_image": 64 << 20,
                                  "prompts_decoded": 21, "prompts_reused": 20}


def test_prompts_are_charged_to_the_image_and_capped_per_image(cone_model_dir: Path) -> None:
    prompt_bytes = 4 * 256 * 256 * 4 + 4 * 4
    on = extractor(cone_model_dir, 3 * (prompt_bytes + 200))
    first = ask(on, TAPS[:2])
    held_two = on.cache.stats().bytes_held
    entry = on.cache.get(str(first.image_id))
    assert held_two == entry.nbytes >= entry.embedding_bytes + 2 * prompt_bytes
    ask(on, TAPS[2:6])  # 4 more: only the 3 newest stay
    assert on.cache.stats().bytes_held == entry.nbytes < entry.embedding_bytes + len(entry.image_bytes) + 4 * prompt_bytes
    answer = ask(on, TAPS[:1])
    assert answer.timings_ms["prompts_decoded"] == 1  # the oldest was dropped


def test_a_prompts_logits_do_not_depend_on_the_other_prompts_of_its_request(tiny_model_dir: Path) -> None:
    """ONNX Runtime's sums differ in the last bits with a run's batch size (1.9e-7 on the tiny
    model, 20 prompts in one run against each alone), so reused prompts could only equal fresh
    ones if every prompt runs alone: the default ``SAM_CPU_DECODER_PROMPTS_PER_RUN`` of 1."""
    engine = HoldExtractor.from_model_dir(tiny_model_dir, RuntimeSettings()).engine
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
    coords = rng.uniform(0, 1000, (20, 2, 2)).astype(np.float32)
    labels = np.tile(np.array([[1, -1]], np.float32), (20, 1))
    together = np.asarray(engine.decode(embedding, coords, labels).low_res_masks)
    for i in range(20):
        alone = np.asarray(engine.decode(embedding, coords[i:i + 1], labels[i:i + 1]).low_res_masks)
        assert np.array_equal(alone[0], together[i]), f"prompt {i} differs by {np.abs(alone[0] - together[i]).max()}"
