"""A photo's image embedding as the endpoint returns it, kept on the client: ``Embedding``.

Get it once (``SageMakerSAMClient.get_embedding``), keep it (``to_npz``/``from_npz``), and send taps
with it instead of the photo (``extract(embedding=...)``), or run the exported decoder on it on the
device (a mobile app: ``to_model_coords`` maps taps into the decoder's frame).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: The zip members of an embedding, in answers and in requests (the server's names).
EMBEDDING_JSON, EMBEDDING_BIN = "embedding.json", "embedding.bin"
#: The dtypes the endpoint sends and takes.
EMBEDDING_DTYPES = ("float16", "float32")
#: The .npz members (``to_npz``'s keyword names).
_NPZ_ARRAY, _NPZ_METADATA = "embedding", "metadata_json"


@dataclass(frozen=True)
class Embedding:
    """``array``: float16 or float32, ``metadata['shape']`` (1x256x64x64), C order; ``metadata``: the
    endpoint's embedding object without its data (model_id, model_type, encoder_variant, dtype, shape,
    image_id, original_size_hw [H, W], input_size_hw [h, w], input_frame, point_transform)."""

    array: NDArray[Any]
    metadata: dict[str, Any]

    def __post_init__(self) -> None:
        if str(self.array.dtype) not in EMBEDDING_DTYPES:
            raise ValueError(f"an embedding is {' or '.join(EMBEDDING_DTYPES)}, not {self.array.dtype}")
        if list(self.array.shape) != list(self.metadata.get("shape", [])):
            raise ValueError(f"the array's shape {list(self.array.shape)} is not the metadata's "
                             f"{self.metadata.get('shape')}")

    @classmethod
    def from_wire(cls, document: dict[str, Any], data: bytes) -> Embedding:
        """The endpoint's object (with or without ``data_base64``) and the raw little-endian array."""
        metadata = {key: value for key, value in document.items() if key != "data_base64"}
        dtype = metadata.get("dtype")
        if dtype not in EMBEDDING_DTYPES:
            raise ValueError(f"the embedding's dtype {dtype!r} is not one of {', '.join(EMBEDDING_DTYPES)}")
        array = np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).astype(dtype)
        return cls(array.reshape(metadata.get("shape", [-1])), metadata)

    @property
    def model_id(self) -> str:
        return str(self.metadata["model_id"])

    @property
    def original_size_hw(self) -> tuple[int, int]:
        height, width = self.metadata["original_size_hw"]
        return int(height), int(width)

    def raw_bytes(self) -> bytes:
        """The array as the endpoint takes it: little-endian, C order."""
        return np.ascontiguousarray(self.array, dtype=self.array.dtype.newbyteorder("<")).tobytes()

    def to_json_object(self) -> dict[str, Any]:
        """The request's ``embedding`` object (the metadata plus ``data_base64``)."""
        return {**self.metadata, "data_base64": base64.b64encode(self.raw_bytes()).decode("ascii")}

    def to_model_coords(self, points_xy: list[tuple[float, float]]) -> NDArray[np.float32]:
        """Taps (x, y) in upright photo pixels -> float32 Nx2 in the decoder's ``input_frame``
        (SAM's ``ResizeLongestSide.apply_coords``: x * scale_x, y * scale_y, in float64, then float32)."""
        scales = self.metadata["point_transform"]
        coords = np.asarray(points_xy, np.float64).reshape(-1, 2) * [scales["scale_x"], scales["scale_y"]]
        return coords.astype(np.float32)

    def to_npz(self, path: Path) -> Path:
        """Write ``path`` (numpy .npz: the array and the metadata as JSON; no pickles)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            np.savez(handle, embedding=self.array, metadata_json=np.array(json.dumps(self.metadata)))
        return path

    @classmethod
    def from_npz(cls, path: Path) -> Embedding:
        """Read a file ``to_npz`` wrote; a ValueError names what is wrong with another file."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                array, metadata = archive[_NPZ_ARRAY], json.loads(str(archive[_NPZ_METADATA]))
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:  # ValueError: not .npz (numpy), bad JSON
            raise ValueError(f"{path} is not an embedding file written by --save-embedding: {exc}") from exc
        if not isinstance(metadata, dict):
            raise ValueError(f"{path} is not an embedding file written by --save-embedding (its metadata is no object)")  # noqa: TRY004 (a bad file, one error type for the CLI)
        return cls(array, metadata)


def embedding_request(embedding: Embedding, document: dict[str, Any], fmt: str) -> tuple[bytes, str]:
    """(body, content type) of a request bringing ``embedding`` with ``document`` (prompt and outputs):
    ``json`` (``embedding`` with ``data_base64``) or ``zip`` (``points.json``, ``embedding.json``,
    ``embedding.bin``: raw bytes, a quarter smaller)."""
    if fmt == "json":
        return json.dumps({**document, "embedding": embedding.to_json_object()}).encode(), "application/json"
    if fmt == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
            archive.writestr("points.json", json.dumps(document))
            archive.writestr(EMBEDDING_JSON, json.dumps(embedding.metadata))
            archive.writestr(EMBEDDING_BIN, embedding.raw_bytes())
        return buffer.getvalue(), "application/zip"
    raise ValueError(f"a request with an embedding is json or zip, not {fmt!r} (a raw request carries a photo)")
