"""The ``manifest.json`` written by ``export/export_sam.py`` and read by the runtime.

The manifest is the contract between export and serving: which files make up a model,
their tensor signatures, the preprocessing constants, and the parity the export proved.
Loading it validates everything the runtime relies on, so a broken model directory is
refused at start-up with a message that names the problem.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import ModelLoadError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

#: Encoder input: normalized, zero-padded image, float32, 1x3x1024x1024 (N, C, H, W).
ENCODER_INPUT = "image"
#: Encoder output: float32 1x256x64x64 image embedding.
ENCODER_OUTPUT = "image_embeddings"
#: Decoder inputs, in order (B prompts, N points each):
#:   image_embeddings float32 1x256x64x64; point_coords float32 BxNx2 (x, y) in the
#:   resized 1024 frame; point_labels float32 BxN (1 fg, 0 bg, 2/3 box corners, -1 pad);
#:   mask_input float32 Bx1x256x256 low-res logits; has_mask_input float32 B (0 or 1).
DECODER_INPUTS = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
#: Decoder outputs: low_res_masks float32 Bx4x256x256 logits (token 0 = single-mask
#: output, tokens 1..3 = multimask outputs); iou_predictions float32 Bx4.
DECODER_OUTPUTS = ("low_res_masks", "iou_predictions")

#: Pre-processing graph (``export/prepost_graphs.py``): image_hwc uint8 HxWx3 (upright RGB),
#: input_size_hw int64 [2] (resized h, w) -> image float32 1x3xSxS (the encoder's input).
PREPROCESS_INPUTS = ("image_hwc", "input_size_hw")
PREPROCESS_OUTPUTS = (ENCODER_INPUT,)
#: Post-processing graph: low_res_masks float32 PxTxLxL, mask_indices int64 [M] (prompt * T +
#: token), input_size_hw int64 [2], output_size_hw int64 [2], min_area int64 [] -> union_packed
#: uint8 H'xceil(W'/8), masks_packed uint8 MxH'xceil(W'/8), areas int64 [M], boxes_xyxy int64
#: Mx4, kept bool [M].
POSTPROCESS_INPUTS = ("low_res_masks", "mask_indices", "input_size_hw", "output_size_hw", "min_area")
POSTPROCESS_OUTPUTS = ("union_packed", "masks_packed", "areas", "boxes_xyxy", "kept")
#: Cut-out resize graph: image_hwc uint8 HxWx3 (upright RGB), output_size_hw int64 [2] (H', W')
#: -> rgb_hwc uint8 H'xW'x3, the cut-out's pixels at the output size.
CUTOUT_RESIZE_INPUTS = ("image_hwc", "output_size_hw")
CUTOUT_RESIZE_OUTPUTS = ("rgb_hwc",)

MODEL_ROLES = ("encoder", "decoder", "encoder_fp16", "decoder_fp16", "encoder_int8", "decoder_int8", "preprocess",
               "postprocess", "cutout_resize", "decoder_web", "decoder_web_int8")
#: Graphs only the playground's browser mode (onnxruntime-web) and apps run; the server never loads them.
BROWSER_ROLES = ("decoder_web", "decoder_web_int8")
#: The pre/post graphs a request runs through (exports before them have neither).
PREPOST_ROLES = ("preprocess", "postprocess")
#: Graphs that run around the model (CUDA EP on a GPU; never TensorRT, which rejects antialiased Resize):
#: the pre/post graphs and the cut-out's resize (exports before it lack only that one).
AROUND_MODEL_ROLES = (*PREPOST_ROLES, "cutout_resize")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (ints, or strings for dynamic axes) and dtype of one graph input/output."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(name=str(data["name"]), shape=tuple(data["shape"]), dtype=str(data["dtype"]))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class ModelFile:
    """One ONNX graph of the model: its file, optional external-data file, and signature."""

    role: str
    file: str
    precision: str
    size_bytes: int
    sha256: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    external_data: str | None = None
    external_data_size_bytes: int | None = None

    @classmethod
    def from_json(cls, role: str, data: Mapping[str, Any]) -> ModelFile:
        return cls(
            role=role,
            file=str(data["file"]),
            precision=str(data["precision"]),
            size_bytes=int(data["size_bytes"]),
            sha256=str(data["sha256"]),
            inputs=tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            outputs=tuple(TensorSpec.from_json(t) for t in data["outputs"]),
            external_data=data.get("external_data"),
            external_data_size_bytes=data.get("external_data_size_bytes"),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "file": self.file,
            "precision": self.precision,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }
        if self.external_data is not None:
            out["external_data"] = self.external_data
            out["external_data_size_bytes"] = self.external_data_size_bytes
        return out


@dataclass(frozen=True)
class Manifest:
    """Everything the runtime needs to know about an exported model directory."""

    model_type: str
    image_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    mask_threshold: float
    num_mask_tokens: int
    models: Mapping[str, ModelFile]
    weights: Mapping[str, Any] = field(default_factory=dict)
    opset: int = 17
    versions: Mapping[str, str] = field(default_factory=dict)
    parity: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Manifest:
        try:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise ModelLoadError(
                    f"manifest format_version {version} is not supported (expected {FORMAT_VERSION})"
                )
            models = {role: ModelFile.from_json(role, spec) for role, spec in data["models"].items()}
            return cls(
                model_type=str(data["model_type"]),
                image_size=int(data["image_size"]),
                pixel_mean=tuple(float(v) for v in data["pixel_mean"]),  # type: ignore[arg-type]
                pixel_std=tuple(float(v) for v in data["pixel_std"]),  # type: ignore[arg-type]
                mask_threshold=float(data["mask_threshold"]),
                num_mask_tokens=int(data["num_mask_tokens"]),
                models=models,
                weights=dict(data.get("weights", {})),
                opset=int(data.get("opset", 17)),
                versions=dict(data.get("versions", {})),
                parity=dict(data.get("parity", {})),
                created_at=str(data.get("created_at", "")),
            )
        except ModelLoadError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"manifest is malformed: {type(exc).__name__}: {exc}") from exc

    @property
    def embedding_shape(self) -> tuple[int, ...]:
        """The image embedding's shape, e.g. (1, 256, 64, 64), from the decoder's recorded signature."""
        return _static_shape(self.models["decoder"].inputs[0])

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-res masks (256), from its ``mask_input`` signature."""
        return int(_static_shape(self.models["decoder"].inputs[3], skip=1)[-1])

    @property
    def has_prepost_graphs(self) -> bool:
        """Whether the export holds the pre- and post-processing graphs (exports before them do not)."""
        return all(role in self.models for role in PREPOST_ROLES)

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_type": self.model_type,
            "image_size": self.image_size,
            "pixel_mean": list(self.pixel_mean),
            "pixel_std": list(self.pixel_std),
            "mask_threshold": self.mask_threshold,
            "num_mask_tokens": self.num_mask_tokens,
            "weights": dict(self.weights),
            "opset": self.opset,
            "versions": dict(self.versions),
            "models": {role: m.to_json() for role, m in self.models.items()},
            "parity": dict(self.parity),
            "created_at": self.created_at,
        }


def sha256_of_file(path: Path, chunk_bytes: int = 8 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks (vit_h encoders are gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(model_dir: Path, verify_checksums: bool = True) -> Manifest:
    """Read and validate ``model_dir/manifest.json`` against the files beside it.

    Checks: the manifest parses; ``encoder`` and ``decoder`` are present; every listed file
    exists with the recorded size (a truncated copy is caught here) and, when
    ``verify_checksums``, the recorded SHA-256; signatures carry the names the runtime uses.
    Raises ``ModelLoadError`` naming the first problem found.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"model directory {model_dir} does not exist")
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: export the model with export/export_sam.py")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    manifest = Manifest.from_json(data)
    for role in ("encoder", "decoder"):
        if role not in manifest.models:
            raise ModelLoadError(f"{path} lists no '{role}' model")
    for model in manifest.models.values():
        _check_model_file(model_dir, model, verify_checksums)
    _check_signature(manifest.models["encoder"], (ENCODER_INPUT,), (ENCODER_OUTPUT,))
    _check_signature(manifest.models["decoder"], DECODER_INPUTS, DECODER_OUTPUTS)
    if "preprocess" in manifest.models:
        _check_signature(manifest.models["preprocess"], PREPROCESS_INPUTS, PREPROCESS_OUTPUTS)
    if "postprocess" in manifest.models:
        _check_signature(manifest.models["postprocess"], POSTPROCESS_INPUTS, POSTPROCESS_OUTPUTS)
    if "cutout_resize" in manifest.models:
        _check_signature(manifest.models["cutout_resize"], CUTOUT_RESIZE_INPUTS, CUTOUT_RESIZE_OUTPUTS)
    low_res = manifest.models["decoder"].outputs[0].shape
    if len(low_res) != 4 or low_res[1] != manifest.num_mask_tokens:
        raise ModelLoadError(f"decoder low_res_masks shape {list(low_res)} does not have the manifest's "
                             f"num_mask_tokens={manifest.num_mask_tokens} masks per prompt")
    try:
        _ = (manifest.embedding_shape, manifest.low_res_size)  # validated here, read by the engine
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc
    if len(manifest.pixel_mean) != 3 or len(manifest.pixel_std) != 3:
        raise ModelLoadError("manifest pixel_mean and pixel_std must have 3 values each")
    return manifest


def _check_model_file(model_dir: Path, model: ModelFile, verify_checksums: bool) -> None:
    path = model_dir / model.file
    if not path.is_file():
        raise ModelLoadError(f"{model.role} model file {path} is missing")
    size = path.stat().st_size
    if size != model.size_bytes:
        raise ModelLoadError(
            f"{model.role} model file {path} has {size} bytes, the manifest says {model.size_bytes}"
            " (truncated or replaced file)"
        )
    if model.external_data is not None:
        data_path = model_dir / model.external_data
        if not data_path.is_file():
            raise ModelLoadError(f"{model.role} external data file {data_path} is missing")
        data_size = data_path.stat().st_size
        if data_size != model.external_data_size_bytes:
            raise ModelLoadError(
                f"{model.role} external data file {data_path} has {data_size} bytes, the manifest"
                f" says {model.external_data_size_bytes} (truncated or replaced file)"
            )
    if verify_checksums and sha256_of_file(path) != model.sha256:
        raise ModelLoadError(f"{model.role} model file {path} does not match the manifest's SHA-256")


def _static_shape(spec: TensorSpec, skip: int = 0) -> tuple[int, ...]:
    """The integer dims of ``spec`` after the first ``skip`` (dynamic) ones; ValueError if any is symbolic."""
    dims = spec.shape[skip:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise ValueError(f"{spec.name} has shape {list(spec.shape)}: expected fixed sizes after the first {skip}")
    return tuple(int(d) for d in dims)


def _check_signature(model: ModelFile, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> None:
    got_in = tuple(t.name for t in model.inputs)
    got_out = tuple(t.name for t in model.outputs)
    if got_in != inputs or got_out != outputs:
        raise ModelLoadError(
            f"{model.role} signature {got_in} -> {got_out} does not match the runtime's {inputs} -> {outputs}"
        )
