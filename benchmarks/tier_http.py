"""The CPU tiers through HTTP: real server processes (``inference.py serve``), one per tier and prompt-cache setting.

Scenarios, each a JSON answer with compact outputs (no cut-out, 1-bit PNG mask):
- first tap: a new photo (raw JPEG body, 1 click in the custom attributes): decode, encoder,
  decoder, mask; the photo's bytes are new each repeat, so the encoder always runs;
- follow-up tap: 1 new click by ``image_id`` (the embedding is cached);
- N taps resent (the issue's 20): a client that resends every earlier tap (``/playground``, the old
  service's clients) sends N earlier clicks and 1 new one by ``image_id``, to a server with the prompt
  cache on (the N were decoded before) and one with it off (``SAM_PROMPT_CACHE_BYTES_PER_IMAGE=0``);
  both answers must be identical;
- pinned bytes: a session's pinned embedding (``/stats`` ``cache.pinned_bytes``) as its image
  gathers decoded prompts.
Clicks are (x, y) in the photo's upright pixels.
"""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from serving.local_endpoint import LocalEndpoint, start_local_endpoint

Click = tuple[float, float]
COMPACT_OUTPUTS = {"result_format": "none", "mask_format": "png1"}
#: The answer fields that must agree between the prompt cache on and off (masks and per-click results).
ANSWER_FIELDS = ("mask_image_base64", "clicks", "empty")


@dataclass
class TierServer:
    """A server process running one CPU tier, its prompt cache on or off, and an HTTP client."""

    tier: str
    prompt_cache: bool
    endpoint: LocalEndpoint
    client: httpx.Client

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None
             ) -> tuple[float, dict[str, Any], httpx.Headers]:
        """POST /invocations: round-trip milliseconds, the JSON answer and the response headers."""
        start = time.perf_counter()
        response = self.client.post("/invocations", content=body,
                                    headers={"Content-Type": content_type, **(headers or {})})
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        if response.status_code != 200:
            raise RuntimeError(f"{self.tier} server answered {response.status_code}: {response.text[:500]}")
        return elapsed_ms, response.json(), response.headers

    def tap(self, image_id: str, clicks: Sequence[Click], headers: dict[str, str] | None = None
            ) -> tuple[float, dict[str, Any]]:
        """Clicks on an image the server holds (by ``image_id``, or the session's when it is empty)."""
        body: dict[str, Any] = {"points": [{"x": x, "y": y} for x, y in clicks], "outputs": COMPACT_OUTPUTS}
        if image_id:
            body["image_id"] = image_id
        elapsed_ms, answer, _ = self.post(json.dumps(body).encode(), "application/json", headers)
        return elapsed_ms, answer

    def first_tap(self, jpeg: bytes, click: Click, headers: dict[str, str] | None = None
                  ) -> tuple[float, dict[str, Any], httpx.Headers]:
        """A new photo as a raw JPEG body with one click."""
        attributes = f"points={click[0]},{click[1]}&result_format=none&mask_format=png1"
        return self.post(jpeg, "image/jpeg", {"X-Amzn-SageMaker-Custom-Attributes": attributes, **(headers or {})})

    def stats(self) -> dict[str, Any]:
        return dict(self.client.get("/stats").json())

    def close(self) -> None:
        self.client.close()
        self.endpoint.stop()


def start_tier_servers(model_dir: Path, tiers: Sequence[str], log_dir: Path,
                       prompt_caches: Sequence[bool] = (True, False)) -> dict[tuple[str, bool], TierServer]:
    """A server per (tier, prompt cache on/off in ``prompt_caches``), all started before any is
    waited for; logs ``server-<tier>-cache-<on|off>.log`` in ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: dict[tuple[str, bool], LocalEndpoint] = {}
    try:
        for tier in tiers:
            for cache in prompt_caches:
                env = {"SAM_PROVIDERS": "cpu", "SAM_LOG_FORMAT": "json", "SAM_CPU_SPINNING": "false",
                       "SAM_CPU_PRECISION": tier, **({} if cache else {"SAM_PROMPT_CACHE_BYTES_PER_IMAGE": "0"})}
                log = log_dir / f"server-{tier}-cache-{'on' if cache else 'off'}.log"
                started[tier, cache] = start_local_endpoint(model_dir, log, env, wait_ready=False)
        for endpoint in started.values():
            endpoint.wait_ready(deadline_s=600)
    except BaseException:
        for endpoint in started.values():
            endpoint.stop()
        raise
    return {key: TierServer(key[0], key[1], endpoint, httpx.Client(base_url=endpoint.url, timeout=300))
            for key, endpoint in started.items()}


def _decoder_ms(answer: dict[str, Any]) -> float:
    return float(answer["timings_ms"]["decoder_ms"])


def taps_once(server: TierServer, jpeg: bytes, clicks: Sequence[Click], prefix: str = "") -> dict[str, float]:
    """First tap on a new photo, then a follow-up tap: round trips, decoder milliseconds and the
    follow-up's mask area (pixels), under names starting with ``prefix``."""
    first_ms, first, _ = server.first_tap(jpeg, clicks[0])
    follow_ms, follow = server.tap(first["image_id"], [clicks[1]])
    measured = {"first_tap_ms": first_ms, "first_tap_decoder_ms": _decoder_ms(first),
                "first_tap_encoder_ms": float(first["timings_ms"].get("encoder_ms", 0.0)),
                "follow_up_tap_ms": follow_ms, "follow_up_decoder_ms": _decoder_ms(follow),
                "follow_up_mask_area_px": float(follow["clicks"][0]["area"])}
    return {prefix + key: value for key, value in measured.items()}


def resent_once(cached: TierServer, uncached: TierServer, jpeg: bytes, clicks: Sequence[Click]) -> dict[str, Any]:
    """N earlier taps resent with 1 new one, prompt cache on and off (``clicks``: N + 1 clicks).

    The cache-on server has decoded the N earlier taps before (one request with them); each
    server encoded the photo on a first tap that is not counted.
    """
    earlier, new = list(clicks[:-1]), clicks[-1]
    on_id = cached.first_tap(jpeg, earlier[0])[1]["image_id"]
    cached.tap(on_id, earlier)
    off_id = uncached.first_tap(jpeg, earlier[0])[1]["image_id"]
    on_ms, on = cached.tap(on_id, [*earlier, new])
    off_ms, off = uncached.tap(off_id, [*earlier, new])
    return {"resent_on_ms": on_ms, "resent_on_decoder_ms": _decoder_ms(on),
            "resent_on_prompts_decoded": on["timings_ms"]["prompts_decoded"],
            "resent_on_prompts_reused": on["timings_ms"]["prompts_reused"],
            "resent_off_ms": off_ms, "resent_off_decoder_ms": _decoder_ms(off),
            "resent_off_prompts_decoded": off["timings_ms"]["prompts_decoded"],
            "resent_identical": all(on.get(name) == off.get(name) for name in ANSWER_FIELDS),
            **answer_difference(on, off)}


def _mask(answer: dict[str, Any]) -> NDArray[np.bool_]:
    """The hold mask of a JSON answer (``mask_image_base64``, a 1-bit PNG): bool HxW, output pixels."""
    with Image.open(io.BytesIO(base64.b64decode(answer["mask_image_base64"]))) as image:
        return np.asarray(image.convert("L")) > 0


def answer_difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How far two answers to the same request are apart: the hold masks' IoU (1.0 when both are
    empty) and pixels that differ, the largest differences of a click's score and area (click by
    click), and the names of the fields that differ (``clicks.<field>`` for a click's)."""
    mask_a, mask_b = _mask(a), _mask(b)
    union = int(np.count_nonzero(mask_a | mask_b))
    pairs = list(zip(a["clicks"], b["clicks"], strict=True))
    fields = {name for name in ANSWER_FIELDS if a.get(name) != b.get(name) and name != "clicks"}
    fields |= {f"clicks.{key}" for x, y in pairs for key in x if x[key] != y.get(key)}
    return {"resent_mask_iou": np.count_nonzero(mask_a & mask_b) / union if union else 1.0,
            "resent_mask_pixels_differing": float(np.count_nonzero(mask_a ^ mask_b)),
            "resent_score_max_abs_diff": float(max((abs(x["score"] - y["score"]) for x, y in pairs), default=0.0)),
            "resent_area_max_abs_diff": float(max((abs(x["area"] - y["area"]) for x, y in pairs), default=0)),
            "resent_fields_differing": sorted(fields)}


def pinned_bytes_growth(server: TierServer, jpeg: bytes, clicks: Sequence[Click], counts: Sequence[int]
                        ) -> dict[str, int]:
    """``cache.pinned_bytes`` of a new session at each count (ascending, first 1) of prompts decoded
    on its image: the opening tap decodes the first, each later request resends them and adds the
    rest; the session is closed after."""
    _, _, headers = server.first_tap(jpeg, clicks[0], {"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
    session = {"X-Amzn-SageMaker-Session-Id": headers["X-Amzn-SageMaker-New-Session-Id"].split(";")[0].strip()}
    growth = {"1": int(server.stats()["cache"]["pinned_bytes"])}
    for count in counts[1:]:
        server.tap("", clicks[:count], session)
        growth[str(count)] = int(server.stats()["cache"]["pinned_bytes"])
    server.post(json.dumps({"close_session": True, "points": []}).encode(), "application/json", session)
    return growth
