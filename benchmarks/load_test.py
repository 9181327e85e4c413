"""Bounded load test: K concurrent clients for a fixed time against a running server.

    python benchmarks/load_test.py --url http://127.0.0.1:8080 --clients 8 --duration 30 [--photos 3] [--out r.json]

Each client loops over a weighted mix of actions until the time is up:
- ``new_photo``: a photo the server has not seen (same pixels, new bytes: a cold request),
- ``cached_click``: a follow-up by ``image_id``,
- ``session``: NEW_SESSION, a follow-up through the session, close,
- ``bad_request``: malformed JSON or a point outside the photo (must answer 400).
Every mask is compared with the answer a single client got for the same photo and clicks.
Reports requests/s, p50/p99 per action, status counts; exits 1 on any 5xx or wrong answer.
Only loopback or explicitly given test hosts are ever targeted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx
import numpy as np
from PIL import Image

from benchmarks.arguments import size_wh
from synthetic.wall_photo import wall_photo

ACTIONS = {"new_photo": 2, "cached_click": 5, "session": 2, "bad_request": 1}
COMPACT = {"result_format": "none", "mask_format": "png1"}


@dataclass
class Photo:
    jpeg: bytes
    clicks: list[dict[str, float]]
    expected_mask: bytes = b""
    image_id: str = ""


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)

    def add(self, action: str, status: int, seconds: float) -> None:
        self.latencies.setdefault(action, []).append(seconds * 1000.0)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1


def mask_pixels(mask_b64: str) -> bytes:
    """Decoded mask pixels (so PNG encoder details never matter)."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(mask_b64))).convert("L")).tobytes()


async def _post(client: httpx.AsyncClient, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post("/invocations", content=content, headers={"Content-Type": "application/json", **headers})


async def prepare(client: httpx.AsyncClient, count: int, size_wh: tuple[int, int]) -> list[Photo]:
    """Photos and their single-client answers."""
    photos = []
    for index in range(count):
        photo = wall_photo(size_wh[0], size_wh[1], holds=30, seed=500 + index)
        clicks = [{"x": x, "y": y} for x, y in photo.clicks(3)]
        response = await _post(client, {"image_base64": base64.b64encode(photo.jpeg).decode(), "points": clicks,
                                        "outputs": COMPACT})
        response.raise_for_status()
        data = response.json()
        photos.append(Photo(photo.jpeg, clicks, mask_pixels(data["mask_image_base64"]), data["image_id"]))
    return photos


async def one_action(client: httpx.AsyncClient, action: str, photo: Photo, rng: random.Random, tally: Tally) -> None:
    start = time.perf_counter()
    if action == "new_photo":
        fresh = photo.jpeg + rng.randbytes(8)  # bytes after the JPEG end: same pixels, new cache key
        response = await _post(client, {"image_base64": base64.b64encode(fresh).decode(), "points": photo.clicks,
                                        "outputs": COMPACT})
        _check(response, photo, action, tally)
    elif action == "cached_click":
        response = await _post(client, {"image_id": photo.image_id, "points": photo.clicks, "outputs": COMPACT})
        if response.status_code == 404:  # evicted under memory pressure: a valid, distinct answer
            response = await _post(client, {"image_base64": base64.b64encode(photo.jpeg).decode(),
                                            "points": photo.clicks, "outputs": COMPACT})
        _check(response, photo, action, tally)
    elif action == "session":
        opened = await _post(client, {"image_base64": base64.b64encode(photo.jpeg).decode(), "points": photo.clicks,
                                      "outputs": COMPACT}, **{"X-Amzn-SageMaker-Session-Id": "NEW_SESSION"})
        _check(opened, photo, action, tally)
        if opened.status_code == 200:
            session = opened.headers["x-amzn-sagemaker-new-session-id"].split(";")[0]
            follow = await _post(client, {"points": photo.clicks, "outputs": COMPACT, "close_session": True},
                                 **{"X-Amzn-SageMaker-Session-Id": session})
            _check(follow, photo, action, tally)
            response = follow
        else:
            response = opened
    else:
        body: dict[str, Any] | bytes = b"{not json" if rng.random() < 0.5 else {
            "image_id": photo.image_id, "points": [{"x": -5, "y": 1}]}
        response = await _post(client, body)
        if response.status_code != 400:
            tally.wrong.append(f"bad request answered {response.status_code}")
    tally.add(action, response.status_code, time.perf_counter() - start)


def _check(response: httpx.Response, photo: Photo, action: str, tally: Tally) -> None:
    if response.status_code >= 500:
        tally.server_errors.append(f"{action}: {response.status_code} {response.text[:200]}")
    elif response.status_code != 200:
        tally.wrong.append(f"{action}: unexpected {response.status_code} {response.text[:200]}")
    elif mask_pixels(response.json()["mask_image_base64"]) != photo.expected_mask:
        tally.wrong.append(f"{action}: mask differs from the single-client answer")


async def client_loop(url: str, photos: list[Photo], deadline: float, seed: int, tally: Tally) -> None:
    rng = random.Random(seed)
    names, weights = list(ACTIONS), list(ACTIONS.values())
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        while time.monotonic() < deadline:
            await one_action(client, rng.choices(names, weights)[0], rng.choice(photos), rng, tally)


async def run(url: str, clients: int, duration_s: float, photos_count: int, size_wh: tuple[int, int]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        photos = await prepare(client, photos_count, size_wh)
    tally = Tally()
    start = time.monotonic()
    await asyncio.gather(*(client_loop(url, photos, start + duration_s, seed, tally) for seed in range(clients)))
    elapsed = time.monotonic() - start
    total = sum(len(v) for v in tally.latencies.values())
    return {
        "clients": clients, "duration_s": round(elapsed, 2), "requests": total,
        "requests_per_s": round(total / elapsed, 2),
        "latency_ms": {action: {"p50": round(float(np.percentile(v, 50)), 1), "p99": round(float(np.percentile(v, 99)), 1),
                                "n": len(v)} for action, v in tally.latencies.items()},
        "statuses": tally.statuses, "server_errors": tally.server_errors[:20], "wrong_answers": tally.wrong[:20],
        "server_error_count": len(tally.server_errors), "wrong_answer_count": len(tally.wrong),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds (bounded)")
    parser.add_argument("--photos", type=int, default=3)
    parser.add_argument("--size", type=size_wh, default=size_wh("640x853"), help="photo WIDTHxHEIGHT")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not 0 < args.duration <= 3600:
        parser.error("--duration must be within (0, 3600] seconds")
    width, height = args.size
    report = asyncio.run(run(args.url, args.clients, args.duration, args.photos, (width, height)))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 1 if report["server_error_count"] or report["wrong_answer_count"] else 0


if __name__ == "__main__":
    sys.exit(main())
