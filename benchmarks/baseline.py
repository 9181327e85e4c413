"""The old service's request path in PyTorch, timed by stage (the benchmark's baseline).

Per request: decode the photo (EXIF applied), ``SamPredictor.set_image``, one
``predict(multimask_output=False)`` per click, OR the masks, and encode the RGBA cut-out
and the mask as PNG at Pillow's default level (6), as the old service did.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps

from export.old_service import old_service_predict


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _synchronize(predictor: Any) -> None:
    """Wait for queued GPU work, so a stage's time is its own (a no-op on CPU)."""
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)


def baseline_request(predictor: Any, jpeg: bytes, clicks: list[tuple[float, float]]) -> dict[str, Any]:
    """One old-service request; returns stage timings in ms and the output sizes."""
    stages: dict[str, float] = {}
    start = time.perf_counter()
    image = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(jpeg))).convert("RGB"))
    stages["image_decode_ms"] = _ms(start)
    start = time.perf_counter()
    with torch.no_grad():
        predictor.set_image(image)
    _synchronize(predictor)
    stages["encoder_ms"] = _ms(start)
    start = time.perf_counter()
    union, _ = old_service_predict(predictor, clicks)
    stages["decoder_ms"] = _ms(start)
    start = time.perf_counter()
    alpha = np.where(union, 255, 25).astype(np.uint8)
    rgba = np.dstack([image, alpha])
    result, mask = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(result, format="PNG")
    Image.fromarray(union.astype(np.uint8) * 255, "L").save(mask, format="PNG")
    stages["output_encode_ms"] = _ms(start)
    return {"stages": stages, "bytes_out": len(result.getvalue()) + len(mask.getvalue())}


def baseline_worker(connection: Any, model_type: str, seed: int, checkpoint: str | None, device: str = "cpu") -> None:
    """Serve ``baseline_request`` in its own process, as the old service was one.

    ``device``: ``cuda`` runs PyTorch on the GPU, as the old service did on g4dn, so that a GPU
    benchmark compares like with like (``cpu`` on machines without one).

    Receives (jpeg, clicks) tuples and sends back results; ``None`` stops it. Keeping PyTorch
    out of the benchmark's process stops its threads and allocator from sharing with ONNX
    Runtime's (measured here: set_image 21 s alone, 23-28 s when sharing a process).
    """
    from pathlib import Path

    from export.sam_models import build_random, load_checkpoint, predictor_for

    sam = load_checkpoint(model_type, Path(checkpoint)) if checkpoint else build_random(model_type, seed)
    predictor = predictor_for(model_type, sam.to(device))
    connection.send("ready")
    while (message := connection.recv()) is not None:
        jpeg, clicks = message
        connection.send(baseline_request(predictor, jpeg, clicks))
