"""``SageMakerSAMClient``: the endpoint through boto3 (real-time, sessions, async) and its health.

Against a local endpoint URL (our server, or the rehearsal's data plane) no AWS set-up is
needed: the region defaults to ``LOCAL_REGION`` and requests go unsigned when no
credentials are configured. Every botocore failure becomes one ``EndpointError`` line.

On an endpoint with several production variants (an A/B test) every answer says which
variant gave it (``HoldsResult.variant``, SageMaker's ``InvokedProductionVariant``), and
``target_variant`` pins a request to one (``TargetVariant``). A photo's embedding, its
``image_id`` and its session live in the containers of the variant that answered: send every
follow-up of a photo with ``target_variant=result.variant`` (``follow_up_of`` does).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

from holds_client.embedding import EMBEDDING_BIN, EMBEDDING_JSON, Embedding, embedding_request
from holds_client.prompts import (
    RAW_TYPES,
    BoxXyxy,
    Outputs,
    Point,
    Prompt,
    PromptMode,
    RequestFormat,
    build_zip,
    make_outputs,
    make_prompt,
    raw_attributes,
    raw_type,
)
from holds_client.s3_uri import split_s3_uri

#: AWS advises a read timeout above the 60 s invocation limit.
DEFAULT_CONFIG = Config(connect_timeout=10, read_timeout=70, retries={"mode": "standard", "max_attempts": 3})
#: SageMaker real-time limits: request and response bodies (6 MiB each), custom attributes.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
MAX_CUSTOM_ATTRIBUTES_CHARS = 1024
#: The region used against a local endpoint URL when none is configured (it is only a label there).
LOCAL_REGION = "us-east-1"
ACCEPT_TYPES = {"json": "application/json", "zip": "application/zip", "png": "image/png"}
NO_CREDENTIALS = ("no AWS credentials found: run 'aws configure', or set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                  "AWS_SECRET_ACCESS_KEY (a local --endpoint-url needs none)")


#: The warning of an answer whose follow-up by image_id was answered by resending the photo.
RESENT_WARNING = ("the endpoint no longer knew image_id {image_id} (another instance answered, or it was evicted): "
                  "the photo was sent again")


class EndpointError(RuntimeError):
    """The endpoint refused or failed a request; ``status`` is the HTTP status when known."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class HoldsResult:
    """One answer: the cut-out and mask images (PNG or WebP bytes), the metadata, and each
    click's mask (1-bit PNGs) when ``per_click_masks`` was asked for in JSON."""

    result_image: bytes | None
    mask_image: bytes | None
    metadata: dict[str, Any]
    latency_s: float
    session_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    per_click_masks: list[bytes] = field(default_factory=list)
    variant: str | None = None
    #: The photo this answer is about, kept by ``extract`` so ``follow_up_of`` can resend it.
    photo: bytes | None = field(default=None, repr=False)
    #: A follow-up by ``image_id`` that the endpoint no longer knew, answered by sending the photo again.
    resent_photo: bool = False
    #: The photo's embedding, when ``Outputs(embedding=True)`` asked for it.
    embedding: Embedding | None = field(default=None, repr=False)

    @property
    def image_id(self) -> str | None:
        return self.metadata.get("image_id")

    @property
    def warnings(self) -> list[str]:
        return list(self.metadata.get("warnings") or [])

    def save(self, out_dir: Path, stem: str = "") -> list[Path]:
        """Write ``result.webp``/``result.png``, ``mask.png`` and ``metadata.json`` into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in ((f"{stem}result", self.result_image), (f"{stem}mask", self.mask_image)):
            if data is not None:
                suffix = ".webp" if data[:4] == b"RIFF" else ".png"
                path = out_dir / (name + suffix)
                path.write_bytes(data)
                written.append(path)
        for index, data in enumerate(self.per_click_masks, start=1):
            path = out_dir / f"{stem}click_{index}_mask.png"
            path.write_bytes(data)
            written.append(path)
        meta = out_dir / f"{stem}metadata.json"
        meta.write_text(json.dumps(self.metadata, indent=2))
        return [*written, meta]


class SageMakerSAMClient:
    """Invokes the endpoint through boto3 (``sagemaker-runtime``); pass ``endpoint_url`` for a local server.

    Clients are made on first use, so a local endpoint needs no region (``LOCAL_REGION``)
    and no credentials (unsigned requests when none are configured).
    """

    def __init__(self, endpoint_name: str, region: str | None = None, endpoint_url: str | None = None,
                 session: boto3.session.Session | None = None, config: Config = DEFAULT_CONFIG,
                 max_request_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self.endpoint_name = endpoint_name
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.session = session or boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        self.region = self.session.region_name or (LOCAL_REGION if self.endpoint_url else None)
        self.config = config
        self.max_request_bytes = max_request_bytes
        self._clients: dict[str, Any] = {}

    def _client(self, service: str) -> Any:
        if service in self._clients:
            return self._clients[service]
        if self.region is None:
            raise EndpointError("no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (or aws configure)")
        config = self.config
        local_runtime = service == "sagemaker-runtime" and self.endpoint_url is not None
        if self.session.get_credentials() is None:
            if not local_runtime:
                raise EndpointError(NO_CREDENTIALS)
            config = config.merge(Config(signature_version=UNSIGNED))
        client = self.session.client(service, region_name=self.region, config=config,
                                     endpoint_url=self.endpoint_url if local_runtime else None)
        self._clients[service] = client
        return client

    @property
    def runtime(self) -> Any:
        return self._client("sagemaker-runtime")

    # ---- real-time -------------------------------------------------------------------------
    def extract(self, image: bytes | None, points: Sequence[Point] = (), labels: Sequence[int] | None = None,
                box: BoxXyxy | None = None, *, mode: PromptMode = "per_click", multimask: bool = False,
                min_area: int = 0, outputs: Outputs | Mapping[str, Any] | None = None, fmt: RequestFormat = "auto",
                accept: str | None = None, open_session: bool = False, target_variant: str | None = None,
                embedding: Embedding | None = None) -> HoldsResult:
        """Send a photo (or, with ``image=None``, an ``embedding``) and its prompt; ``open_session``
        starts a stateful session.

        ``fmt``: ``json`` (base64 in JSON), ``zip`` (the old contract), ``raw`` (the image file
        as the body, the prompt in the custom attributes) or ``auto`` (JSON while it fits the
        6 MiB request limit, else raw). ``accept``: ``json``, ``zip`` or ``png`` (mask only).
        ``target_variant``: the production variant that must answer (default: SageMaker picks
        one by the variants' weights). ``embedding``: one ``get_embedding`` returned, sent instead
        of the photo (``json`` or ``zip``; no cut-out: ``result_format`` is ``none``; no session).
        """
        prompt = make_prompt(points, labels, box, mode, multimask, min_area)
        wanted = make_outputs(outputs)
        if (image is None) == (embedding is None):
            raise ValueError("send a photo or an embedding: exactly one of them")
        if embedding is not None:
            return self._extract_with(embedding, prompt, wanted, fmt, accept, target_variant)
        assert image is not None
        if fmt == "auto":
            fmt = self._auto_format(image, prompt, wanted)
        body, content_type, attributes = _request_body(image, prompt, wanted, fmt)
        result = self._invoke(body, content_type, accept or ("zip" if fmt == "zip" else None),
                              "NEW_SESSION" if open_session else None, custom_attributes=attributes,
                              target_variant=target_variant)
        result.photo = image
        return result

    def get_embedding(self, image: bytes, dtype: str = "float16", *, fmt: RequestFormat = "auto",
                      target_variant: str | None = None) -> Embedding:
        """The photo's image embedding (``float16``, 2 MiB, or ``float32``) with what a decoder needs to
        use it; asked alone (no prompt, no cut-out, no mask) and answered as a zip (the raw array)."""
        wanted = Outputs(result_format="none", mask_format="none", embedding=True, embedding_dtype=dtype)
        result = self.extract(image, (), outputs=wanted, fmt=fmt, accept="zip", target_variant=target_variant)
        if result.embedding is None:
            raise EndpointError("the endpoint's answer carries no embedding (an endpoint older than the embeddings API?)")
        return result.embedding

    def _extract_with(self, embedding: Embedding, prompt: Prompt, outputs: Outputs, fmt: RequestFormat,
                      accept: str | None, target_variant: str | None) -> HoldsResult:
        """``extract`` with a brought embedding: JSON while it fits the request limit (``auto``), else zip."""
        document = {**prompt.to_json(), "outputs": replace(outputs, result_format="none").to_json()}
        if fmt == "auto":
            fmt = "json" if 4 * math.ceil(embedding.array.nbytes / 3) + 8192 <= self.max_request_bytes else "zip"
        body, content_type = embedding_request(embedding, document, fmt)
        return self._invoke(body, content_type, accept or ("zip" if fmt == "zip" else None), None,
                            target_variant=target_variant)

    def follow_up(self, points: Sequence[Point] = (), labels: Sequence[int] | None = None, box: BoxXyxy | None = None,
                  *, image_id: str | None = None, session_id: str | None = None, mode: PromptMode = "per_click",
                  multimask: bool = False, min_area: int = 0, outputs: Outputs | Mapping[str, Any] | None = None,
                  accept: str | None = None, close_session: bool = False,
                  target_variant: str | None = None, photo: bytes | None = None) -> HoldsResult:
        """More clicks on a photo sent before, by ``image_id`` or through a session (no upload).

        On an A/B endpoint pass the first answer's ``variant`` as ``target_variant``: the photo
        is cached only by that variant's containers (``follow_up_of`` does this for you).
        ``photo``: the photo of ``image_id``; when the endpoint answers 404 ``unknown_image_id``
        (another instance without a shared cache, or evicted) it is sent once more with the same
        prompt, and the answer says so (``resent_photo``, and a warning).
        """
        body: dict[str, Any] = {**make_prompt(points, labels, box, mode, multimask, min_area).to_json(),
                                "outputs": make_outputs(outputs).to_json()}
        if image_id is not None:
            body["image_id"] = image_id
        if close_session:
            body["close_session"] = True
        try:
            return self._invoke(json.dumps(body).encode(), "application/json", accept, session_id,
                                target_variant=target_variant)
        except EndpointError as exc:
            if photo is None or image_id is None or session_id is not None or not is_unknown_image_id(exc):
                raise
        result = self.extract(photo, points, labels, box, mode=mode, multimask=multimask, min_area=min_area,
                              outputs=outputs, accept=accept, target_variant=target_variant)
        result.resent_photo = True
        result.metadata["warnings"] = [*result.warnings, RESENT_WARNING.format(image_id=image_id)]
        return result

    def follow_up_of(self, first: HoldsResult, points: Sequence[Point] = (), labels: Sequence[int] | None = None,
                     **options: Any) -> HoldsResult:
        """More clicks on the photo of ``first``: through its session if it opened one, else by its
        ``image_id``, always pinned to the variant that answered ``first``; a follow-up by
        ``image_id`` that the endpoint no longer knows resends ``first``'s photo once."""
        if first.session_id is None and first.image_id is None:
            raise ValueError("the first answer has neither a session nor an image_id to follow up")
        return self.follow_up(points, labels, session_id=first.session_id,
                              image_id=None if first.session_id else first.image_id,
                              target_variant=first.variant, photo=first.photo, **options)

    def close_session(self, session_id: str, target_variant: str | None = None) -> str | None:
        """Close a session; returns the closed id the endpoint confirmed."""
        result = self._invoke(json.dumps({"close_session": True}).encode(), "application/json", None, session_id,
                              target_variant=target_variant)
        return result.extra.get("closed_session_id")

    def _auto_format(self, image: bytes, prompt: Prompt, outputs: Outputs) -> RequestFormat:
        if 4 * math.ceil(len(image) / 3) + 4096 <= self.max_request_bytes:
            return "json"
        fits_raw = len(image) <= self.max_request_bytes and image.startswith(tuple(RAW_TYPES))
        if fits_raw and len(raw_attributes(prompt, outputs)) <= MAX_CUSTOM_ATTRIBUTES_CHARS:
            return "raw"
        return "json"  # too large either way: _invoke explains the limit

    def _invoke(self, body: bytes, content_type: str, accept: str | None, session: str | None,
                custom_attributes: str | None = None, target_variant: str | None = None) -> HoldsResult:
        if len(body) > self.max_request_bytes:
            raise EndpointError(
                f"the request body would be {len(body)} bytes, over SageMaker's real-time limit of "
                f"{self.max_request_bytes} bytes: send the photo raw (--format raw, no base64), shrink it, "
                "or use the asynchronous endpoint (--async)", 413)
        if custom_attributes is not None and len(custom_attributes) > MAX_CUSTOM_ATTRIBUTES_CHARS:
            raise EndpointError(f"the prompt needs {len(custom_attributes)} characters of custom attributes; SageMaker "
                                f"allows {MAX_CUSTOM_ATTRIBUTES_CHARS}: use --format json")
        kwargs: dict[str, Any] = {"EndpointName": self.endpoint_name, "Body": body, "ContentType": content_type}
        if accept:
            kwargs["Accept"] = ACCEPT_TYPES.get(accept, accept)
        if session:
            kwargs["SessionId"] = session
        if custom_attributes:
            kwargs["CustomAttributes"] = custom_attributes
        if target_variant:
            kwargs["TargetVariant"] = target_variant
        start = time.perf_counter()
        response = self._call(lambda: self.runtime.invoke_endpoint(**kwargs))
        payload = self._call(lambda: response["Body"].read())
        result = parse_response(payload, response.get("ContentType", ""), time.perf_counter() - start)
        result.variant = response.get("InvokedProductionVariant") or None
        new_session = response.get("NewSessionId")
        result.session_id = new_session.split(";")[0].strip() if new_session else session
        if response.get("ClosedSessionId"):
            result.extra["closed_session_id"] = response["ClosedSessionId"]
        return result

    def _call(self, action: Any) -> Any:
        """Run a boto3 call, turning every botocore failure into one ``EndpointError`` line."""
        try:
            return action()
        except ClientError as exc:
            raise _endpoint_error(exc) from exc
        except NoCredentialsError as exc:
            raise EndpointError(NO_CREDENTIALS) from exc
        except EndpointConnectionError as exc:
            raise EndpointError(f"could not reach the endpoint: {exc}") from exc
        except BotoCoreError as exc:
            raise EndpointError(f"request to {self.endpoint_name} failed: {exc}") from exc

    # ---- asynchronous ----------------------------------------------------------------------
    def extract_async(self, image: bytes, points: Sequence[Point] = (), bucket: str = "",
                      labels: Sequence[int] | None = None, box: BoxXyxy | None = None, *,
                      mode: PromptMode = "per_click", multimask: bool = False, min_area: int = 0,
                      outputs: Outputs | Mapping[str, Any] | None = None, fmt: RequestFormat = "auto",
                      accept: str | None = None, prefix: str = "requests", timeout_s: float = 900.0,
                      poll_s: float = 1.0) -> HoldsResult:
        """Upload the request (every prompt and output option) to S3, ``invoke_endpoint_async``, and
        wait for the output object. ``fmt`` ``auto`` is the old backend's zip; the answer is a zip
        unless ``accept`` asks otherwise. There is no 6 MiB limit on this path."""
        if not bucket:
            raise ValueError("an asynchronous request needs an S3 bucket")
        fmt = "zip" if fmt == "auto" else fmt
        body, content_type, attributes = _request_body(image, make_prompt(points, labels, box, mode, multimask, min_area),
                                                       make_outputs(outputs), fmt)
        media = ACCEPT_TYPES.get(accept or "zip", accept or "application/zip")
        suffix = {"zip": "zip", "json": "json"}.get(fmt, "bin")
        key = f"{prefix.strip('/')}/{uuid.uuid4().hex}.{suffix}"
        s3 = self._client("s3")
        start = time.perf_counter()
        self._call(lambda: s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type))
        extra = {"CustomAttributes": attributes} if attributes else {}
        response = self._call(lambda: self.runtime.invoke_endpoint_async(
            EndpointName=self.endpoint_name, InputLocation=f"s3://{bucket}/{key}", ContentType=content_type,
            Accept=media, **extra))
        output, failure = response["OutputLocation"], response.get("FailureLocation")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            payload = self._s3_get(output)
            if payload is not None:
                return parse_response(payload, media, time.perf_counter() - start)
            if failure:
                error = self._s3_get(failure)
                if error is not None:
                    raise EndpointError(f"asynchronous inference failed: {_error_text(error)}")
            time.sleep(poll_s)
        raise EndpointError(f"no asynchronous result at {output} after {timeout_s:.0f} s")

    def _s3_get(self, uri: str) -> bytes | None:
        bucket, key = split_s3_uri(uri)
        s3 = self._client("s3")
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise _endpoint_error(exc) from exc
        except BotoCoreError as exc:
            raise EndpointError(f"cannot read {uri}: {exc}") from exc

    # ---- health ----------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """A local endpoint: ``GET /ping``. On AWS: the endpoint's status from ``describe_endpoint``.

        The answer has ``healthy`` (bool) plus what was seen.
        """
        if self.endpoint_url is not None:
            url = f"{self.endpoint_url}/ping"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    status = response.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                raise EndpointError(f"could not reach {url}: {getattr(exc, 'reason', exc)}") from exc
            return {"healthy": status == 200, "url": url, "http_status": status}
        sagemaker = self._client("sagemaker")
        described = self._call(lambda: sagemaker.describe_endpoint(EndpointName=self.endpoint_name))
        return {"healthy": described["EndpointStatus"] == "InService", "endpoint": self.endpoint_name,
                "status": described["EndpointStatus"], "config": described.get("EndpointConfigName"),
                "variants": [{"name": v.get("VariantName"), "instances": v.get("CurrentInstanceCount"),
                              "weight": v.get("CurrentWeight")}
                             for v in described.get("ProductionVariants", [])],
                "failure_reason": described.get("FailureReason")}


def request_file(image: bytes, points: Sequence[Point] = (), labels: Sequence[int] | None = None,
                 box: BoxXyxy | None = None, *, mode: PromptMode = "per_click", multimask: bool = False,
                 min_area: int = 0, outputs: Outputs | Mapping[str, Any] | None = None,
                 fmt: RequestFormat = "zip") -> tuple[bytes, str]:
    """(body, content type) of one request as a file: a batch transform input (``zip``, the
    asynchronous endpoint's contract, or ``json``). Raw images cannot be batch inputs: their prompt
    travels in a header that a batch job cannot send."""
    if fmt not in ("zip", "json"):
        raise ValueError(f"a request file is zip or json, not {fmt!r} (a raw photo's prompt travels in a header)")
    body, content_type, _ = _request_body(image, make_prompt(points, labels, box, mode, multimask, min_area),
                                          make_outputs(outputs), fmt)
    return body, content_type


def _request_body(image: bytes, prompt: Prompt, outputs: Outputs, fmt: str) -> tuple[bytes, str, str | None]:
    """(body, content type, custom attributes) of a request carrying the photo in ``fmt``."""
    if fmt == "json":
        document = {"image_base64": base64.b64encode(image).decode(), **prompt.to_json(), "outputs": outputs.to_json()}
        return json.dumps(document).encode(), "application/json", None
    if fmt == "zip":
        return build_zip(image, {**prompt.to_json(), "outputs": outputs.to_json()}), "application/zip", None
    if fmt == "raw":
        return image, raw_type(image), raw_attributes(prompt, outputs)
    raise ValueError(f"request format must be auto, json, zip or raw, not {fmt!r}")


def parse_response(payload: bytes, content_type: str, latency_s: float) -> HoldsResult:
    """Decode a JSON, zip or image/png answer."""
    media = content_type.split(";")[0].strip().lower()
    try:
        if media == "application/json":
            data = json.loads(payload)
            images = {k: base64.b64decode(data[k]) if data.get(k) else None
                      for k in ("result_image_base64", "mask_image_base64")}
            meta = {k: v for k, v in data.items() if not k.endswith("_base64") and k != "embedding"}
            clicks = [base64.b64decode(m) for m in data.get("per_click_masks_base64") or []]
            wire = data.get("embedding")
            embedding = None if wire is None else Embedding.from_wire(wire, base64.b64decode(wire["data_base64"]))
            return HoldsResult(images["result_image_base64"], images["mask_image_base64"], meta, latency_s,
                               per_click_masks=clicks, embedding=embedding)
        if media == "application/zip":
            with zipfile.ZipFile(io.BytesIO(payload)) as archive:
                names = set(archive.namelist())
                meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
                embedding = None if EMBEDDING_JSON not in names else Embedding.from_wire(
                    json.loads(archive.read(EMBEDDING_JSON)), archive.read(EMBEDDING_BIN))
                return HoldsResult(archive.read("result_image.bin") if "result_image.bin" in names else None,
                                   archive.read("mask_image.bin") if "mask_image.bin" in names else None,
                                   meta, latency_s, embedding=embedding)
    except (ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise EndpointError(f"the endpoint's {media} answer cannot be decoded: {exc}") from exc
    if media == "image/png":
        return HoldsResult(None, payload, {}, latency_s)
    raise EndpointError(f"unexpected response type {content_type!r}")


def is_unknown_image_id(exc: EndpointError) -> bool:
    """Whether the endpoint answered 404 ``unknown_image_id`` (it does not hold that photo): SageMaker's
    ModelError carries the error code; our server's own 404 reaches botocore with only its message."""
    text = str(exc)
    return exc.status == 404 and ("unknown_image_id" in text or ("image_id" in text and "is unknown" in text))


def _endpoint_error(exc: ClientError) -> EndpointError:
    """One line from a botocore error: SageMaker's ModelError carries the container's status and
    JSON error (``{"error", "message", "request_id"}``); other errors carry their own message."""
    response = exc.response
    error = response.get("Error", {})
    status = response.get("OriginalStatusCode") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    original = response.get("OriginalMessage")
    message = _error_text(original.encode()) if original else (error.get("Message") or str(exc))
    code = error.get("Code")
    label = f"{status}" if not code or code == str(status) else f"{status} {code}"
    return EndpointError(f"endpoint error {label}: {message}", int(status) if str(status).isdigit() else None)


def _error_text(body: bytes) -> str:
    """Our server's JSON error body as 'code: message (request id ...)', or the text itself."""
    text = body.decode(errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:500]
    if not isinstance(document, dict) or "message" not in document:
        return " ".join(text.split())[:500]
    request = f" (request id {document['request_id']})" if document.get("request_id") else ""
    return f"{document.get('error', 'error')}: {document['message']}{request}"
