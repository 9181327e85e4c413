"""Client for the SAM hold-extraction endpoint: real-time (JSON, zip, raw), sessions, async.

    python sagemaker_client.py --endpoint-name sam-climbing-endpoint --test-image wall.jpg \\
        [--points "x,y;x,y"] [--region us-east-1] [--endpoint-url URL] [--out-dir out] \\
        [--format json|zip|raw] [--follow-up "x,y"] [--async --bucket B] [--health]

Without --points the client asks for the centre of the image. Results are written as PNG
files (``result.png``, ``mask.png``) and timings are printed. Errors from the endpoint come
back as one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import time
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

RequestFormat = Literal["json", "zip", "raw"]
Point = tuple[float, float]

#: AWS advises a read timeout above the 60 s invocation limit.
DEFAULT_CONFIG = Config(connect_timeout=10, read_timeout=70, retries={"mode": "standard", "max_attempts": 3})
RAW_TYPES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG": "image/png", b"RIFF": "image/webp"}


class EndpointError(RuntimeError):
    """The endpoint refused or failed a request; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HoldsResult:
    """One answer: the cut-out and mask images (PNG or WebP bytes) and the metadata."""

    result_image: bytes | None
    mask_image: bytes | None
    metadata: dict[str, Any]
    latency_s: float
    session_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def image_id(self) -> str | None:
        return self.metadata.get("image_id")

    def save(self, out_dir: Path, stem: str = "") -> list[Path]:
        """Write ``result.png`` / ``mask.png`` (and ``metadata.json``) into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in ((f"{stem}result", self.result_image), (f"{stem}mask", self.mask_image)):
            if data is not None:
                suffix = ".webp" if data[:4] == b"RIFF" else ".png"
                path = out_dir / (name + suffix)
                path.write_bytes(data)
                written.append(path)
        meta = out_dir / f"{stem}metadata.json"
        meta.write_text(json.dumps(self.metadata, indent=2))
        return [*written, meta]


def _points_json(points: Sequence[Point], labels: Sequence[int] | None) -> list[dict[str, Any]]:
    labels = list(labels) if labels is not None else [1] * len(points)
    if len(labels) != len(points):
        raise ValueError("labels must have one entry per point")
    return [{"x": float(x), "y": float(y), "label": int(label)} for (x, y), label in zip(points, labels)]


def parse_points(text: str) -> list[Point]:
    """'120,340;560.5,80' -> [(120.0, 340.0), (560.5, 80.0)]."""
    points = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        x, y = part.split(",")
        points.append((float(x), float(y)))
    if not points:
        raise ValueError("no points given")
    return points


class SageMakerSAMClient:
    """Invokes the endpoint through boto3; pass ``endpoint_url`` for a local server."""

    def __init__(self, endpoint_name: str, region: str | None = None, endpoint_url: str | None = None,
                 session: boto3.session.Session | None = None, config: Config = DEFAULT_CONFIG) -> None:
        self.endpoint_name = endpoint_name
        session = session or boto3.session.Session(region_name=region)
        self.runtime = session.client("sagemaker-runtime", endpoint_url=endpoint_url, config=config)
        self.sagemaker = session.client("sagemaker", config=config)
        self.s3 = session.client("s3", config=config)

    # ---- real-time -------------------------------------------------------------------------
    def extract(self, image: bytes, points: Sequence[Point], labels: Sequence[int] | None = None,
                fmt: RequestFormat = "json", outputs: dict[str, Any] | None = None,
                open_session: bool = False) -> HoldsResult:
        """Send an image and its clicks; ``open_session`` starts a stateful session."""
        if fmt == "json":
            body: dict[str, Any] = {"image_base64": base64.b64encode(image).decode(), "points": _points_json(points, labels)}
            if outputs:
                body["outputs"] = outputs
            return self._invoke(json.dumps(body).encode(), "application/json", session="NEW_SESSION" if open_session else None)
        if fmt == "zip":
            document: dict[str, Any] = {"points": _points_json(points, labels)}
            if outputs:
                document["outputs"] = outputs
            return self._invoke(build_zip(image, document), "application/zip", accept="application/zip",
                                session="NEW_SESSION" if open_session else None)
        content_type = next((t for magic, t in RAW_TYPES.items() if image.startswith(magic)), None)
        if content_type is None:
            raise ValueError("raw requests take JPEG, PNG or WebP files")
        attributes = "points=" + ";".join(f"{x},{y}" for x, y in points)
        if labels is not None:
            attributes += "&labels=" + ",".join(str(int(v)) for v in labels)
        for key, value in (outputs or {}).items():
            attributes += f"&{key}={str(value).lower() if isinstance(value, bool) else value}"
        return self._invoke(image, content_type, custom_attributes=attributes,
                            session="NEW_SESSION" if open_session else None)

    def follow_up(self, points: Sequence[Point], labels: Sequence[int] | None = None, image_id: str | None = None,
                  session_id: str | None = None, outputs: dict[str, Any] | None = None,
                  close_session: bool = False) -> HoldsResult:
        """More clicks on an image sent before, by ``image_id`` or through a session."""
        body: dict[str, Any] = {"points": _points_json(points, labels)}
        if image_id is not None:
            body["image_id"] = image_id
        if outputs:
            body["outputs"] = outputs
        if close_session:
            body["close_session"] = True
        return self._invoke(json.dumps(body).encode(), "application/json", session=session_id)

    def close_session(self, session_id: str) -> str | None:
        """Close a session; returns the closed id the endpoint confirmed."""
        result = self._invoke(json.dumps({"close_session": True}).encode(), "application/json", session=session_id)
        return result.extra.get("closed_session_id")

    def _invoke(self, body: bytes, content_type: str, accept: str | None = None, session: str | None = None,
                custom_attributes: str | None = None) -> HoldsResult:
        kwargs: dict[str, Any] = {"EndpointName": self.endpoint_name, "Body": body, "ContentType": content_type}
        if accept:
            kwargs["Accept"] = accept
        if session:
            kwargs["SessionId"] = session
        if custom_attributes:
            kwargs["CustomAttributes"] = custom_attributes
        start = time.perf_counter()
        try:
            response = self.runtime.invoke_endpoint(**kwargs)
            payload = response["Body"].read()
        except ClientError as exc:
            raise _endpoint_error(exc) from exc
        except BotoCoreError as exc:
            raise EndpointError(f"could not reach endpoint {self.endpoint_name}: {exc}") from exc
        latency = time.perf_counter() - start
        result = parse_response(payload, response.get("ContentType", ""), latency)
        new_session = response.get("NewSessionId")
        result.session_id = new_session.split(";")[0].strip() if new_session else session
        if response.get("ClosedSessionId"):
            result.extra["closed_session_id"] = response["ClosedSessionId"]
        return result

    # ---- asynchronous ----------------------------------------------------------------------
    def extract_async(self, image: bytes, points: Sequence[Point], bucket: str, prefix: str = "requests",
                      labels: Sequence[int] | None = None, timeout_s: float = 900.0, poll_s: float = 1.0) -> HoldsResult:
        """Upload a zip request to S3, ``invoke_endpoint_async``, and wait for the output object."""
        key = f"{prefix.strip('/')}/{uuid.uuid4().hex}.zip"
        start = time.perf_counter()
        try:
            self.s3.put_object(Bucket=bucket, Key=key, Body=build_zip(image, {"points": _points_json(points, labels)}),
                               ContentType="application/zip")
            response = self.runtime.invoke_endpoint_async(
                EndpointName=self.endpoint_name, InputLocation=f"s3://{bucket}/{key}", ContentType="application/zip",
                Accept="application/zip")
        except ClientError as exc:
            raise _endpoint_error(exc) from exc
        output, failure = response["OutputLocation"], response.get("FailureLocation")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            body = self._s3_get(output)
            if body is not None:
                return parse_response(body, "application/zip", time.perf_counter() - start)
            if failure:
                error = self._s3_get(failure)
                if error is not None:
                    raise EndpointError(f"asynchronous inference failed: {error.decode(errors='replace')[:500]}")
            time.sleep(poll_s)
        raise EndpointError(f"no asynchronous result at {output} after {timeout_s:.0f} s")

    def _s3_get(self, uri: str) -> bytes | None:
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        try:
            return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    # ---- control plane ---------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """The endpoint's status and variants from ``describe_endpoint``."""
        try:
            described = self.sagemaker.describe_endpoint(EndpointName=self.endpoint_name)
        except ClientError as exc:
            raise _endpoint_error(exc) from exc
        return {"status": described["EndpointStatus"], "config": described.get("EndpointConfigName"),
                "variants": [{"name": v.get("VariantName"), "instances": v.get("CurrentInstanceCount")}
                             for v in described.get("ProductionVariants", [])],
                "failure_reason": described.get("FailureReason")}


def build_zip(image: bytes, document: dict[str, Any]) -> bytes:
    """The old zip request: ``image.bin`` + ``points.json``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("image.bin", image)
        archive.writestr("points.json", json.dumps(document))
    return buffer.getvalue()


def parse_response(payload: bytes, content_type: str, latency_s: float) -> HoldsResult:
    """Decode a JSON, zip or image/png answer."""
    media = content_type.split(";")[0].strip().lower()
    if media == "application/json":
        data = json.loads(payload)
        images = {k: base64.b64decode(data[k]) if data.get(k) else None for k in ("result_image_base64", "mask_image_base64")}
        meta = {k: v for k, v in data.items() if not k.endswith("_base64")}
        return HoldsResult(images["result_image_base64"], images["mask_image_base64"], meta, latency_s)
    if media == "application/zip":
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            names = set(archive.namelist())
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            return HoldsResult(archive.read("result_image.bin") if "result_image.bin" in names else None,
                               archive.read("mask_image.bin") if "mask_image.bin" in names else None, meta, latency_s)
    if media == "image/png":
        return HoldsResult(None, payload, {}, latency_s)
    raise EndpointError(f"unexpected response type {content_type!r}")


def _endpoint_error(exc: ClientError) -> EndpointError:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = error.get("Message") or str(exc)
    try:  # our server's JSON error body, when it comes through unchanged
        message = json.loads(message).get("message", message)
    except (ValueError, AttributeError):
        pass
    return EndpointError(f"endpoint error {status}: {message}", status)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Extract climbing holds through the SageMaker endpoint")
    parser.add_argument("--endpoint-name", required=True)
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url", help="a local server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--test-image", type=Path, help="wall photo (JPEG, PNG, WebP)")
    parser.add_argument("--points", help="clicks 'x,y;x,y' in upright pixels (default: image centre)")
    parser.add_argument("--follow-up", help="clicks sent afterwards in the same session, 'x,y;x,y'")
    parser.add_argument("--format", choices=["json", "zip", "raw"], default="json")
    parser.add_argument("--result-format", choices=["png", "webp", "none"], default="png")
    parser.add_argument("--max-side", type=int, help="scale the outputs so the longest side fits")
    parser.add_argument("--out-dir", type=Path, default=Path("out"))
    parser.add_argument("--async", dest="use_async", action="store_true", help="asynchronous endpoint via S3")
    parser.add_argument("--bucket", help="S3 bucket for --async requests")
    parser.add_argument("--health", action="store_true", help="only print describe_endpoint's status")
    parser.add_argument("--expect-holds", action="store_true", help="exit 1 when the mask is empty")
    parser.add_argument("--verify", action="store_true", help="exit 1 when the answer is inconsistent with the photo")
    args = parser.parse_args(argv)
    client = SageMakerSAMClient(args.endpoint_name, args.region, args.endpoint_url)
    try:
        if args.health:
            print(json.dumps(client.health()))
            return 0
        if args.test_image is None:
            parser.error("--test-image is required")
        image = args.test_image.read_bytes()
        points = parse_points(args.points) if args.points else [_centre(image)]
        outputs: dict[str, Any] = {"result_format": args.result_format}
        if args.max_side:
            outputs["max_side"] = args.max_side
        if args.use_async:
            if not args.bucket:
                parser.error("--async needs --bucket")
            result = client.extract_async(image, points, args.bucket)
            report: dict[str, Any] = {"async_s": round(result.latency_s, 3)}
        else:
            result = client.extract(image, points, fmt=args.format, outputs=outputs, open_session=bool(args.follow_up))
            report = {"first_request_s": round(result.latency_s, 3), "image_id": result.image_id}
            if args.follow_up:
                follow = client.follow_up(parse_points(args.follow_up), session_id=result.session_id,
                                          outputs=outputs, close_session=True)
                follow.save(args.out_dir, "follow_up_")
                report["follow_up_s"] = round(follow.latency_s, 3)
                report["server_follow_up_ms"] = follow.metadata.get("timings_ms")
        written = result.save(args.out_dir)
        report.update({"server_timings_ms": result.metadata.get("timings_ms"), "empty": result.metadata.get("empty"),
                       "files": [str(p) for p in written]})
        print(json.dumps(report, indent=2))
        if args.verify:
            problems = verify(result, image)
            if problems:
                print("error: wrong answer: " + "; ".join(problems), file=sys.stderr)
                return 1
        if args.expect_holds and (result.mask_image is None or _mask_is_empty(result.mask_image)):
            print("error: the endpoint found no hold at the given points", file=sys.stderr)
            return 1
        return 0
    except (EndpointError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def verify(result: HoldsResult, image: bytes) -> list[str]:
    """Problems with an answer, independent of the model's weights: sizes, mask values, alpha.

    The mask must be binary and of the photo's upright size (or its ``max_side`` scaling);
    the cut-out must carry the photo's pixels with alpha 255 on the mask and 25 elsewhere.
    """
    import numpy as np
    from PIL import Image, ImageOps

    problems = []
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(image))).convert("RGB")
    if result.mask_image is None:
        return ["the answer has no mask"]
    mask_image = Image.open(io.BytesIO(result.mask_image))
    mask = np.asarray(mask_image.convert("L"))
    if mask_image.size != upright.size and not result.metadata.get("width"):
        problems.append(f"mask is {mask_image.size}, the upright photo {upright.size}")
    if not set(np.unique(mask).tolist()) <= {0, 255}:
        problems.append("mask is not binary (values other than 0 and 255)")
    if result.result_image is not None:
        cutout = Image.open(io.BytesIO(result.result_image))
        if cutout.mode != "RGBA" or cutout.size != mask_image.size:
            problems.append(f"cut-out is {cutout.mode} {cutout.size}, expected RGBA {mask_image.size}")
        else:
            pixels = np.asarray(cutout)
            expected_alpha = np.where(mask > 0, 255, 25)
            if not np.array_equal(pixels[..., 3], expected_alpha):
                problems.append("cut-out alpha is not 255 on the mask and 25 elsewhere")
            if cutout.size == upright.size:
                difference = np.abs(pixels[..., :3].astype(np.int16) - np.asarray(upright, np.int16)).mean()
                if difference > 2.0:
                    problems.append(f"cut-out pixels differ from the photo (mean difference {difference:.1f})")
    return problems


def _centre(image: bytes) -> Point:
    from PIL import Image, ImageOps

    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(image)))
    return upright.width / 2, upright.height / 2


def _mask_is_empty(mask: bytes) -> bool:
    from PIL import Image

    return Image.open(io.BytesIO(mask)).convert("L").getbbox() is None


if __name__ == "__main__":
    sys.exit(main())
