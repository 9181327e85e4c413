"""The shared embedding tier, side by side in one run (issue 23), against a real redis-server.

    python benchmarks/bench_shared_cache.py --model-dir models/vit_t --repeats 3 --out out/shared-vit_t

Three instances share one engine (the same graphs; each has its own in-process cache): A and B
use the shared tier, C does not. Per repeat, on a new 12 MP photo: A encodes it (the store now
holds it); then, interleaved,
- ``other_instance_shared_ms``: a follow-up by ``image_id`` on B, served from the shared tier;
- ``other_instance_reencode_ms``: the same follow-up on C, which must be sent the photo again
  (what the client's resend costs without the tier: decode + encoder + decoder);
- ``local_hit_with_tier_ms`` / ``local_hit_without_tier_ms``: the same follow-up again on B and on
  C, now local-cache hits (the tier should add nothing);
- ``miss_overhead_ms``: what the tier adds to a new photo before and around the encoder (lookup
  miss, lock, second lookup, queueing the write), with the encoder replaced by a ready entry.
Writes ``shared_cache.json`` (every sample) and ``SHARED_CACHE.md`` (medians) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from runtime.cache import EmbeddingCache
from runtime.engine import SamEngine
from runtime.holds import Click, ExtractRequest, HoldExtractor
from runtime.settings import RuntimeSettings
from runtime.shared_store import SharedStore, SharedStoreSettings
from runtime.shared_tier import SharedTier, identity_of
from synthetic.wall_photo import wall_photo
from tests.redis_server import redis_server

SCENARIOS = ("other_instance_shared_ms", "other_instance_reencode_ms", "local_hit_with_tier_ms",
             "local_hit_without_tier_ms", "miss_overhead_ms")


def _ms(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return round((time.perf_counter() - start) * 1000, 3)


def _tier(engine: SamEngine, url: str) -> SharedTier:
    nbytes = 4 * int(np.prod(engine.embedding_shape))
    store = SharedStore(SharedStoreSettings(url, command_timeout_ms=2000), identity_of(
        engine.manifest, engine.backends, engine.provider), nbytes)
    return SharedTier(store, engine.embedding_shape, engine.embedding_from_host)


def one_repeat(seed: int, a: HoldExtractor, b: HoldExtractor, c: HoldExtractor) -> dict[str, float]:
    """One new photo through every scenario (see the module docstring)."""
    photo = wall_photo(seed=seed)
    clicks = tuple(Click(x, y) for x, y in photo.clicks(1))
    first = a.extract(ExtractRequest(clicks, image_bytes=photo.jpeg, need_pixels=False))
    assert a.shared is not None and b.shared is not None
    a.shared.flush()
    by_id = ExtractRequest(clicks, image_id=first.image_id, need_pixels=False)
    with_photo = ExtractRequest(clicks, image_bytes=photo.jpeg, need_pixels=False)
    sample = {"other_instance_shared_ms": _ms(lambda: b.extract(by_id)),
              "other_instance_reencode_ms": _ms(lambda: c.extract(with_photo)),
              "local_hit_with_tier_ms": _ms(lambda: b.extract(by_id)),
              "local_hit_without_tier_ms": _ms(lambda: c.extract(by_id))}
    entry = b.cache.get(str(first.image_id))
    sample["miss_overhead_ms"] = _ms(lambda: b.shared.encode_once(uuid.uuid4().hex[:32], lambda: entry))  # type: ignore[union-attr]
    b.shared.flush()
    return sample


def report(model_dir: Path, samples: list[dict[str, float]], engines: dict[str, str]) -> str:
    """The medians as a Markdown table."""
    lines = [f"# Shared embedding tier: {model_dir.name} ({engines['encoder']} encoder)", "",
             (f"Machine: {platform.processor() or platform.machine()}, {len(samples)} repeats, 12 MP JPEG, "
              "one redis-server on 127.0.0.1 (same machine)."), "", "| scenario | median ms | samples |",
             "| --- | ---: | --- |"]
    for name in SCENARIOS:
        values = [s[name] for s in samples]
        lines.append(f"| {name} | {statistics.median(values):.3f} | {', '.join(f'{v:.1f}' for v in values)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an exported model (export/export_sam.py)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    engine = SamEngine.from_model_dir(args.model_dir, RuntimeSettings())
    engine.warm_up()
    samples = []
    with redis_server() as (_proc, url):
        a, b = (HoldExtractor(engine, EmbeddingCache(1 << 30), shared=_tier(engine, url)) for _ in range(2))
        c = HoldExtractor(engine, EmbeddingCache(1 << 30))
        for repeat in range(args.repeats):
            samples.append(one_repeat(100 + repeat, a, b, c))
            print(json.dumps(samples[-1]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shared_cache.json").write_text(json.dumps({"model_dir": str(args.model_dir), "engines": engine.backends,
                                                            "samples": samples}, indent=2))
    (args.out / "SHARED_CACHE.md").write_text(report(args.model_dir, samples, engine.backends))
    print(report(args.model_dir, samples, engine.backends))
    return 0


if __name__ == "__main__":
    sys.exit(main())
