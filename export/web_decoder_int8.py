"""The quantised browser decoder: ``decoder_web_int8.onnx``, used only where parity holds.

As SAM's own web demo does, the weights of ``decoder_web.onnx`` are quantised with ONNX Runtime's
``quantize_dynamic`` (QUInt8; activations are quantised at run time: DynamicQuantizeLinear,
MatMulInteger, ConvInteger), which makes the file about 2.3x smaller. Parity: the prompts of the
export's parity set (``export.parity.parity_cases`` on the synthetic parity photo, each built as
the server builds it, ``runtime.holds.build_prompts``; the browser sends no box, so box cases
are left out), each decoded by both graphs on the fp32 encoder's embedding, masks thresholded at
the manifest's ``mask_threshold``. The page uses the int8 file only when every prompt's IoU is
at least ``WEB_INT8_MIN_IOU``; the result is recorded in the manifest either way
(``parity.decoder_web_int8``), and never fails the export (with random weights it is expected to
fail: their noise masks have edges everywhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from onnxruntime.quantization import QuantType, quantize_dynamic
from PIL import Image

from export.parity import open_engine, parity_cases
from runtime.holds import build_prompts
from runtime.manifest import Manifest
from runtime.masks import mask_iou
from runtime.sam_preprocessing import to_model_coords
from synthetic.test_images import synthetic_image

WEB_DECODER_INT8_FILE = "decoder_web_int8.onnx"
WEB_DECODER_INT8_ROLE = "decoder_web_int8"
#: The int8 browser decoder is used only if every parity prompt's mask has at least this IoU with fp32's.
WEB_INT8_MIN_IOU = 0.99
#: The parity photo's size (H, W), as the export's other parity checks use.
PARITY_SIZE_HW = (600, 800)


def quantize_web_decoder(source: Path, target: Path) -> None:
    """``quantize_dynamic`` QUInt8 of the fp32 browser decoder ``source`` into ``target``."""
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QUInt8)


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity_prompts(size_hw: tuple[int, int], image_size: int) -> list[tuple[NDArray[np.float32], NDArray[np.float32]]]:
    """The parity set's prompts without a box: (coords float32 1xNx2 in the model frame, labels float32 1xN)."""
    prompts = []
    for case in parity_cases(size_hw):
        if case.box_xyxy is not None or not case.clicks:
            continue
        coords, labels, _ = build_prompts(case.clicks, None, case.mode)
        model_coords = to_model_coords(coords, size_hw, image_size)
        prompts += [(model_coords[i:i + 1], labels[i:i + 1]) for i in range(len(labels))]
    return prompts


def web_int8_parity(manifest: Manifest, output: Path, fp32_file: str, int8_file: str) -> dict[str, Any]:
    """Per-prompt mask IoU of ``int8_file`` against ``fp32_file`` on the parity set (see the module docstring)."""
    engine = open_engine(manifest, output, manifest.models["encoder"].file, manifest.models["decoder"].file, "numpy")
    prepared = engine.prepare(Image.fromarray(synthetic_image(PARITY_SIZE_HW)))
    embedding = np.asarray(engine.encode(prepared).value, np.float32)
    fp32, int8 = _session(output / fp32_file), _session(output / int8_file)
    fixed = {"image_embeddings": embedding, "mask_input": np.zeros((1, 1, 256, 256), np.float32),
             "has_mask_input": np.zeros(1, np.float32), "input_size_hw": np.array(prepared.input_size_hw, np.int64),
             "output_size_hw": np.array(prepared.orig_size_hw, np.int64)}
    ious = []
    for coords, labels in parity_prompts(prepared.orig_size_hw, manifest.image_size):
        feeds = {**fixed, "point_coords": coords, "point_labels": labels}
        want = fp32.run(["masks"], feeds)[0][0, 0] > manifest.mask_threshold
        got = int8.run(["masks"], feeds)[0][0, 0] > manifest.mask_threshold
        ious.append(mask_iou(got, want))
    iou_min = float(min(ious))
    return {"file": int8_file, "quantization": "quantize_dynamic QUInt8", "prompts": len(ious),
            "iou_min": iou_min, "iou_mean": float(np.mean(ious)), "min_iou_required": WEB_INT8_MIN_IOU,
            "used": iou_min >= WEB_INT8_MIN_IOU, "enforced": False}
