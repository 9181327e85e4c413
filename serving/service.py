"""The hold service: what ``model_fn`` returns and the handler functions drive.

``parse`` (input_fn), ``predict`` (predict_fn) and ``serialise`` (output_fn) are the one code
path used by our HTTP server and by AWS's sagemaker-inference ``Transformer``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import BadRequest
from runtime.holds import ExtractOptions, ExtractRequest, GivenEmbedding, HoldExtractor, build_prompts
from runtime.outputs import check_output_size, check_per_click_masks
from serving.answer_size import check_answer_estimate, check_answer_size, least_answer_bytes
from serving.config import ServerSettings
from serving.contract import ParsedRequest, parse_request
from serving.embedding_input import read_embedding
from serving.embeddings import check_embedding_fits, serialise_embedding
from serving.errors import NotAcceptable
from serving.responses import JSON, PNG, Prediction, check_carries_embedding, negotiate, serialise_prediction
from serving.sessions import NEW_SESSION, SessionStore, check_session_header
from serving.warm import check_warm_request, warm_line

log = logging.getLogger(__name__)

NEW_SESSION_HEADER = "X-Amzn-SageMaker-New-Session-Id"
CLOSED_SESSION_HEADER = "X-Amzn-SageMaker-Closed-Session-Id"
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass(frozen=True)
class RequestContext:
    """Per-request facts our server passes to the handlers (AWS's toolkit passes its own object,
    which we ignore: it is captured at the first request and would carry stale headers)."""

    request_id: str
    custom_attributes: str | None = None
    session_header: str | None = None
    accept: str | None = None
    max_zip_entries: int = 16
    max_zip_member_bytes: int = 64 << 20
    max_response_bytes: int | None = None
    #: Every invocation is a warm request (``SAM_WARM_REQUESTS``, a pre-warm batch transform job).
    warm_requests: bool = False


@dataclass(frozen=True)
class Invocation:
    """``input_fn``'s result: the parsed body plus the session header and negotiated type.

    ``max_response_bytes``: the answer's limit (None: not bounded, as under AWS's toolkit).
    """

    parsed: ParsedRequest
    session_header: str | None
    response_type: str | None
    max_response_bytes: int | None = None


def parse(body: bytes | str, content_type: str | None, context: RequestContext | None) -> Invocation:
    """input_fn: read the body by content type; negotiate the response type early if known."""
    if context is None:
        return Invocation(parse_request(body, content_type), None, None)
    parsed = parse_request(body, content_type, context.custom_attributes,
                           context.max_zip_entries, context.max_zip_member_bytes)
    if context.warm_requests or parsed.warm:
        parsed = dataclasses.replace(parsed, warm=True, default_accept=JSON)
    session_header = check_session_header(context.session_header) if context.session_header else None
    response_type = negotiate(context.accept, parsed.default_accept)
    if parsed.warm and response_type != JSON:
        raise NotAcceptable(f"a warm request answers {JSON} (its report), not {response_type}")
    return Invocation(parsed, session_header, response_type, context.max_response_bytes)


#: Carried by every answer of a model exported with ``--random-weights`` (manifest weights.origin).
RANDOM_WEIGHTS_WARNING = ("this model was exported with random weights (manifest weights.origin = random): "
                          "its masks are meaningless; export a real checkpoint for real holds")


class HoldService:
    """The extractor and the session store, as one handler model.

    ``warnings``: what every answer of this model carries (random weights).
    """

    def __init__(self, extractor: HoldExtractor, sessions: SessionStore) -> None:
        self.extractor = extractor
        self.sessions = sessions
        self.random_weights = extractor.engine.manifest.weights.get("origin") == "random"
        self.warnings: tuple[str, ...] = (RANDOM_WEIGHTS_WARNING,) if self.random_weights else ()

    @classmethod
    def from_model_dir(cls, model_dir: Path, settings: ServerSettings) -> HoldService:
        """Load the model, open a session store on its cache, and warm up both graphs."""
        extractor = HoldExtractor.from_model_dir(model_dir, settings.runtime)
        extractor.engine.warm_up()
        sessions = SessionStore(extractor.cache, settings.session_ttl_s, settings.max_sessions)
        return cls(extractor, sessions)

    def predict(self, invocation: Invocation) -> Prediction:
        """predict_fn: resolve the session, extract holds, open/close sessions.

        The image comes from the request (``image_base64``/the body, ``image_id``, or a brought
        ``embedding``, which takes no session); only a
        request with neither uses the session's image. A request that names an image and a
        session gets a warning when they differ (the session stays bound to its own image).
        """
        parsed = invocation.parsed
        header = invocation.session_header
        warnings = parsed.warnings
        if parsed.warm:
            return self._warm(parsed, header)
        given = self._given_embedding(parsed, header)
        if header == NEW_SESSION and parsed.close_session:
            raise BadRequest("close_session cannot be combined with X-Amzn-SageMaker-Session-Id: NEW_SESSION")
        session = self.sessions.get(header) if header and header != NEW_SESSION else None
        if parsed.close_session and not parsed.clicks and parsed.box_xyxy is None:
            if session is None:
                raise BadRequest("close_session needs the X-Amzn-SageMaker-Session-Id of an open session")
            self.sessions.close(session.session_id)
            return Prediction(None, parsed.outputs, parsed.default_accept, (*self.warnings, *warnings),
                              {CLOSED_SESSION_HEADER: session.session_id}, session.session_id)
        image_id = parsed.image_id
        if parsed.image_bytes is None and image_id is None and given is None:
            if session is None:
                raise BadRequest("the request has no image: send the image, an image_id, or a session id")
            image_id = session.image_id
        need_pixels = parsed.outputs.result_format != "none" and invocation.response_type != PNG
        # Per-click masks travel in JSON answers, or as RLE in a zip's metadata; nowhere else.
        carries_per_click = invocation.response_type in (JSON, None) or parsed.outputs.mask_format == "rle"
        options = parsed.options if carries_per_click else dataclasses.replace(parsed.options, per_click_masks=False)
        result = self.extractor.extract(ExtractRequest(
            parsed.clicks, parsed.image_bytes, image_id, parsed.box_xyxy, options, need_pixels,
            output_check=lambda size_hw: self._check_outputs(size_hw, invocation, options, need_pixels),
            prompts_optional=parsed.outputs.embedding_dtype is not None, embedding=given))
        if session is not None and result.image_id != session.image_id:
            note = (f"the request's image ({result.image_id}) was used, not the session's ({session.image_id}); "
                    "the session stays bound to its own image")
            warnings += (note,)
        precision = self.extractor.engine.precision
        attributes = "" if result.image_id is None else f"image_id={result.image_id}&"
        attributes += f"empty={str(result.empty).lower()}&precision={precision}"
        if self.random_weights:  # the one header SageMaker relays, so mask-only (image/png) answers carry it too
            attributes += "&weights=random"
        headers = {CUSTOM_ATTRIBUTES_HEADER: attributes}
        closed = None
        if header == NEW_SESSION and result.image_id is not None:
            headers[NEW_SESSION_HEADER] = self.sessions.open(result.image_id).header_value()
        elif session is not None and parsed.close_session:
            self.sessions.close(session.session_id)
            headers[CLOSED_SESSION_HEADER] = closed = session.session_id
        dtype = parsed.outputs.embedding_dtype
        embedding = None if dtype is None else serialise_embedding(result, self.extractor.engine.manifest, dtype, precision)
        return Prediction(result, parsed.outputs, parsed.default_accept, (*self.warnings, *warnings), headers, closed,
                          precision, embedding)

    def _warm(self, parsed: ParsedRequest, session_header: str | None) -> Prediction:
        """A warm request (``serving.warm``): store the photo's embedding in the shared tier; a report line."""
        line = warm_line(self.extractor, check_warm_request(parsed, session_header))
        headers = {CUSTOM_ATTRIBUTES_HEADER: f"image_id={line['image_id']}&warm={line['outcome']}"}
        return Prediction(None, parsed.outputs, JSON, (*self.warnings, *parsed.warnings), headers, warm=line)

    def _given_embedding(self, parsed: ParsedRequest, session_header: str | None) -> GivenEmbedding | None:
        """The request's brought embedding, checked against this model and decoded (None when it brings none).
        It is never cached, so it cannot open, use or close a session."""
        if parsed.embedding is None:
            return None
        if session_header is not None or parsed.close_session:
            raise BadRequest("a brought embedding is not kept by the endpoint, so it cannot open, use or close a "
                             "session: send it without X-Amzn-SageMaker-Session-Id and close_session")
        return read_embedding(parsed.embedding, self.extractor.engine.manifest, self.extractor.image_limits)

    def _check_outputs(self, size_hw: tuple[int, int], invocation: Invocation, options: ExtractOptions,
                       need_pixels: bool) -> None:
        """What the answer would hold must be encodable and within the response limit, before any model
        work (see runtime.outputs and serving.answer_size)."""
        parsed = invocation.parsed
        if need_pixels:
            check_output_size(size_hw, parsed.outputs)
        prompts = len(build_prompts(parsed.clicks, parsed.box_xyxy, options.mode)[2]) if options.per_click_masks else 0
        if prompts:
            check_per_click_masks(size_hw, prompts)
        media, limit = invocation.response_type, invocation.max_response_bytes
        if parsed.outputs.embedding_dtype is not None:
            check_carries_embedding(media)
        if limit is not None:
            check_answer_estimate(size_hw, parsed.outputs, media, prompts, limit)
        if limit is not None and parsed.outputs.embedding_dtype is not None:
            check_embedding_fits(self.extractor.engine.embedding_shape, parsed.outputs.embedding_dtype,
                                 media in (JSON, None), least_answer_bytes(size_hw, parsed.outputs, media, prompts),
                                 limit)


def serialise(prediction: Prediction, accept: str | None, max_response_bytes: int | None = None) -> tuple[bytes, str]:
    """output_fn: negotiate ``accept`` against the request's default and serialise.

    ``max_response_bytes``: refuse (413 ``output_too_large``) a serialised answer over it.
    """
    result = prediction.result
    if max_response_bytes is None or result is None:
        return serialise_prediction(prediction, negotiate(accept, prediction.default_accept))

    def check(answer_bytes: int) -> None:
        check_answer_size(answer_bytes, result.out_size_hw, max_response_bytes)

    payload, media = serialise_prediction(prediction, negotiate(accept, prediction.default_accept), check)
    check(len(payload))  # the framing (metadata, RLE masks) counts too
    return payload, media
