"""INT8 graphs for the CPU tier: NNCF post-training quantisation of the exported ONNX graphs.

``quantize_graph`` quantises ``encoder.onnx`` and ``decoder.onnx`` for ``export_sam.py --int8``,
which writes them as ``encoder_int8.onnx`` and ``decoder_int8.onnx`` (ONNX with
QuantizeLinear/DequantizeLinear pairs, which ONNX Runtime and OpenVINO both run in int8). Calibration goes through the
serving code: each calibration image is prepared by ``SamEngine.prepare`` (the encoder's
input, float32 1x3x1024x1024), encoded by the fp32 engine (embedding float32 1x256x64x64),
and a grid of single clicks on it gives the decoder's feeds (``SamEngine.decode``'s own
feeds: one prompt of one point per run). Images are the synthetic walls by default, or the
JPEG/PNG photos of ``--calibration-dir``.

NNCF's default scheme for transformers is used (``ModelType.TRANSFORMER``): it keeps the
softmax, layer norms and GELU in float, the layers known to break under INT8, and quantises
the matrix multiplications and convolutions.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from PIL import Image

from runtime.engine import SamEngine
from runtime.holds import Click, build_prompts
from runtime.sam_preprocessing import to_model_coords
from synthetic.wall_photo import render_wall

log = logging.getLogger(__name__)

#: Synthetic walls used when no --calibration-dir is given (upright size and count).
SYNTHETIC_WALL_SIZE_WH = (768, 1024)
SYNTHETIC_WALLS = 4
#: At most this many photos are read from --calibration-dir (each costs one fp32 encoder run).
MAX_CALIBRATION_IMAGES = 32
#: Clicks per calibration image for the decoder: a GRID x GRID grid.
DECODER_CLICK_GRID = 3
CALIBRATION_SUFFIXES = (".jpg", ".jpeg", ".png")


class CalibrationError(RuntimeError):
    """The calibration images cannot be read (an empty or unreadable --calibration-dir)."""


def calibration_images(calibration_dir: Path | None) -> list[Image.Image]:
    """The calibration photos, upright RGB: ``calibration_dir``'s JPEG/PNG files (sorted, at most
    ``MAX_CALIBRATION_IMAGES``) or, without one, ``SYNTHETIC_WALLS`` synthetic walls."""
    if calibration_dir is None:
        width, height = SYNTHETIC_WALL_SIZE_WH
        return [render_wall(width, height, holds=30, seed=seed)[0] for seed in range(SYNTHETIC_WALLS)]
    if not calibration_dir.is_dir():
        raise CalibrationError(f"--calibration-dir {calibration_dir} is not a directory")
    files = sorted(p for p in calibration_dir.iterdir() if p.suffix.lower() in CALIBRATION_SUFFIXES)[:MAX_CALIBRATION_IMAGES]
    if not files:
        raise CalibrationError(f"--calibration-dir {calibration_dir} holds no .jpg/.jpeg/.png photos")
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"calibration photo {path} cannot be read: {exc}") from exc
    return images


def grid_clicks(size_hw: tuple[int, int], grid: int = DECODER_CLICK_GRID) -> list[Click]:
    """``grid`` x ``grid`` foreground clicks spread over an image of ``size_hw`` (x, y in its pixels)."""
    height, width = size_hw
    return [Click(width * (i + 0.5) / grid, height * (j + 0.5) / grid, 1) for j in range(grid) for i in range(grid)]


def calibration_feeds(engine: SamEngine, images: list[Image.Image]
                      ) -> tuple[list[dict[str, NDArray[np.float32]]], list[dict[str, NDArray[np.float32]]]]:
    """(encoder feeds, decoder feeds) for NNCF, through the fp32 ``engine``'s serving code."""
    encoder_feeds, decoder_feeds = [], []
    for image in images:
        prepared = engine.prepare(image)
        encoder_feeds.append({"image": np.asarray(prepared.tensor, np.float32)})
        embedding = np.asarray(engine.encode(prepared).value, np.float32)
        for click in grid_clicks(prepared.orig_size_hw):
            coords, labels, _ = build_prompts((click,), None, "per_click")
            model_coords = to_model_coords(coords, prepared.orig_size_hw, engine.manifest.image_size)
            decoder_feeds.append(engine.decoder_feeds(embedding, model_coords, labels))
    return encoder_feeds, decoder_feeds


def quantize_graph(source: Path, feeds: list[dict[str, NDArray[np.float32]]]) -> onnx.ModelProto:
    """NNCF post-training quantisation of the ONNX graph ``source``, calibrated on all of ``feeds``."""
    import nncf

    model = onnx.load(str(source))
    quantized: onnx.ModelProto = nncf.quantize(model, nncf.Dataset(feeds), model_type=nncf.ModelType.TRANSFORMER,
                                               subset_size=len(feeds))
    return quantized
