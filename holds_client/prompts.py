"""What a request asks for: the prompt (points, labels, box, mode) and the outputs, and their
encodings as a JSON document, custom attributes (raw requests) and the old zip. Pure functions.

Coordinates are ``(x, y)`` in pixels of the upright photo (EXIF orientation applied).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

RequestFormat = Literal["auto", "json", "zip", "raw"]
PromptMode = Literal["per_click", "single"]
ResultFormat = Literal["png", "webp", "none"]
MaskFormat = Literal["png", "png1", "none"]
Point = tuple[float, float]
BoxXyxy = tuple[float, float, float, float]

RAW_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"RIFF": "image/webp"}


@dataclass(frozen=True)
class Prompt:
    """Where the holds are: points ``(x, y)`` in upright photo pixels with labels (1 hold, 0 not
    hold; default all 1), an optional ``box_xyxy`` in the same frame, and how they combine
    (``mode``, ``multimask``, ``min_area`` in output pixels). Validated on construction."""

    points: tuple[Point, ...] = ()
    labels: tuple[int, ...] | None = None
    box_xyxy: BoxXyxy | None = None
    mode: PromptMode = "per_click"
    multimask: bool = False
    min_area: int = 0

    def __post_init__(self) -> None:
        for index, (x, y) in enumerate(self.points):
            if not (math.isfinite(x) and math.isfinite(y)):
                raise ValueError(f"point {index + 1} ({x}, {y}) is not finite")
        if self.labels is not None:
            if len(self.labels) != len(self.points):
                raise ValueError(f"{len(self.labels)} labels for {len(self.points)} points: give one label per point")
            if any(label not in (0, 1) for label in self.labels):
                raise ValueError("labels must be 1 (hold) or 0 (not hold)")
        if self.box_xyxy is not None and (len(self.box_xyxy) != 4 or not all(map(math.isfinite, self.box_xyxy))):
            raise ValueError("the box must be four finite numbers x0,y0,x1,y1")
        if self.mode not in ("per_click", "single"):
            raise ValueError(f"mode must be per_click or single, not {self.mode!r}")
        if self.min_area < 0:
            raise ValueError("min_area must be >= 0")

    def to_json(self) -> dict[str, Any]:
        """The request fields: points (always), then only the options that differ from the defaults."""
        labels = self.labels if self.labels is not None else (1,) * len(self.points)
        document: dict[str, Any] = {"points": [{"x": x, "y": y, "label": label}
                                               for (x, y), label in zip(self.points, labels)]}
        if self.box_xyxy is not None:
            document["box"] = list(self.box_xyxy)
        if self.mode != "per_click":
            document["mode"] = self.mode
        if self.multimask:
            document["multimask"] = True
        if self.min_area:
            document["min_area"] = self.min_area
        return document


@dataclass(frozen=True)
class Outputs:
    """What the answer carries. The defaults (WebP cut-out, 1-bit PNG mask) fit a 12 MP photo's
    answer into SageMaker's 6 MiB real-time limit; ``result_format="png"`` is the old contract
    (about 8-13 MB for 12 MP). ``max_side`` scales both outputs so the longest side fits.
    ``embedding``: the answer also carries the photo's embedding in ``embedding_dtype`` (the
    endpoint's default, float16, when None)."""

    result_format: ResultFormat = "webp"
    mask_format: MaskFormat = "png1"
    max_side: int | None = None
    per_click_masks: bool = False
    png_level: int | None = None
    embedding: bool = False
    embedding_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.result_format not in ("png", "webp", "none"):
            raise ValueError(f"result_format must be png, webp or none, not {self.result_format!r}")
        if self.mask_format not in ("png", "png1", "none"):
            raise ValueError(f"mask_format must be png, png1 or none, not {self.mask_format!r}")
        if self.max_side is not None and self.max_side < 1:
            raise ValueError("max_side must be >= 1")
        if self.png_level is not None and not 0 <= self.png_level <= 9:
            raise ValueError("png_level must be within 0..9")
        if self.embedding_dtype not in (None, "float16", "float32"):
            raise ValueError(f"embedding_dtype must be float16 or float32, not {self.embedding_dtype!r}")

    def to_json(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None and value is not False}


def parse_points(text: str) -> list[Point]:
    """'120,340;560.5,80' -> [(120.0, 340.0), (560.5, 80.0)]; a ValueError names the bad entry."""
    points = []
    for index, part in enumerate((p.strip() for p in text.split(";")), start=1):
        if not part:
            continue
        values = _numbers(part, f"point {index}")
        if len(values) != 2:
            raise ValueError(f"point {index} {part!r} must be two numbers x,y")
        points.append((values[0], values[1]))
    if not points:
        raise ValueError("no points given (expected 'x,y;x,y')")
    return points


def parse_labels(text: str) -> list[int]:
    """'1,0,1' -> [1, 0, 1]."""
    labels = [p.strip() for p in text.split(",")]
    if any(label not in ("0", "1") for label in labels):
        raise ValueError(f"labels {text!r} must be 1 (hold) or 0 (not hold), comma-separated")
    return [int(label) for label in labels]


def parse_box(text: str) -> BoxXyxy:
    """'10,20,300,400' -> (10.0, 20.0, 300.0, 400.0)."""
    values = _numbers(text, "the box")
    if len(values) != 4:
        raise ValueError(f"the box {text!r} must be four numbers x0,y0,x1,y1")
    return values[0], values[1], values[2], values[3]


def _numbers(text: str, what: str) -> list[float]:
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise ValueError(f"{what}: {item.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{what}: {item.strip()!r} is not finite")
        values.append(value)
    return values


def make_prompt(points: Sequence[Point], labels: Sequence[int] | None, box: BoxXyxy | None, mode: PromptMode,
            multimask: bool, min_area: int) -> Prompt:
    return Prompt(tuple((float(x), float(y)) for x, y in points), tuple(labels) if labels is not None else None,
                  tuple(box) if box is not None else None, mode, multimask, min_area)  # type: ignore[arg-type]


def make_outputs(outputs: Outputs | Mapping[str, Any] | None) -> Outputs:
    if outputs is None:
        return Outputs()
    return outputs if isinstance(outputs, Outputs) else replace(Outputs(), **dict(outputs))


def raw_attributes(prompt: Prompt, outputs: Outputs) -> str:
    """The prompt and outputs as ``X-Amzn-SageMaker-Custom-Attributes`` (``key=value&...``)."""
    document = prompt.to_json()
    pairs = [("points", ";".join(f"{p['x']:g},{p['y']:g}" for p in document["points"]))]
    if prompt.labels is not None:
        pairs.append(("labels", ",".join(str(label) for label in prompt.labels)))
    if "box" in document:
        pairs.append(("box", ",".join(f"{v:g}" for v in document["box"])))
    for key in ("mode", "multimask", "min_area"):
        if key in document:
            pairs.append((key, _attribute(document[key])))
    pairs += [(key, _attribute(value)) for key, value in outputs.to_json().items()]
    return "&".join(f"{key}={value}" for key, value in pairs if key != "points" or value)


def _attribute(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def raw_type(image: bytes) -> str:
    content_type = next((t for magic, t in RAW_TYPES.items() if image.startswith(magic)), None)
    if content_type is None:
        raise ValueError("raw requests take JPEG, PNG or WebP files; use --format json for other images")
    return content_type


def build_zip(image: bytes, document: dict[str, Any]) -> bytes:
    """The old zip request: ``image.bin`` + ``points.json``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("image.bin", image)
        archive.writestr("points.json", json.dumps(document))
    return buffer.getvalue()
