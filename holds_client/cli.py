"""The command line: ``python sagemaker_client.py ...`` (or the ``sam-holds-client`` script).

Every option of the request contract has a flag; every failure is one line on stderr with
exit code 1 (2 for a bad command line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from holds_client.checks import centre, mask_is_empty, verify
from holds_client.client import ACCEPT_TYPES, EndpointError, HoldsResult, SageMakerSAMClient, request_file
from holds_client.embedding import EMBEDDING_DTYPES, Embedding
from holds_client.prompts import Outputs, Point, RequestFormat, parse_box, parse_labels, parse_points


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, not the usage block
        self.exit(2, f"error: {message} (see --help)\n")


def _arg(parse: Any) -> Any:
    """An argparse type from a parser raising ValueError (argparse then names the flag)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__
    return convert


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"{text} must be >= 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(description="Extract climbing holds through the SAM endpoint "
                     "(SageMaker, or a local server with --endpoint-url).")
    where = parser.add_argument_group("endpoint")
    where.add_argument("--endpoint-name", help="the SageMaker endpoint (needed for every request, not for --save-request)")
    where.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION; us-east-1 locally)")
    where.add_argument("--endpoint-url", help="a local server or the rehearsal, e.g. http://127.0.0.1:8080")
    where.add_argument("--health", action="store_true",
                       help="only check health: GET /ping of --endpoint-url, or the endpoint's status on AWS")
    where.add_argument("--target-variant", metavar="VARIANT",
                       help="the production variant that must answer (A/B endpoints; default: by the variants' weights). "
                            "--follow-up requests always go to the variant that answered the first request")
    photo = parser.add_argument_group("photo (one of)")
    photo.add_argument("--test-image", type=Path, help="a wall photo (JPEG, PNG, WebP, ...)")
    photo.add_argument("--image-id", help="a photo sent before (its image_id): clicks only, no upload; with "
                                          "--test-image (that photo), resent once if the endpoint answers 404 "
                                          "unknown_image_id")
    photo.add_argument("--session-id", help="an open session: clicks only, no upload")
    photo.add_argument("--embedding", type=Path, metavar="FILE.npz",
                       help="the photo's embedding saved by --save-embedding, sent instead of the photo: no upload, "
                            "no cut-out (result format none), no session")
    prompt = parser.add_argument_group("prompt")
    prompt.add_argument("--points", type=_arg(parse_points),
                        help="clicks 'x,y;x,y' in upright photo pixels (default: the photo's centre)")
    prompt.add_argument("--labels", type=_arg(parse_labels), help="one label per point, '1,0,...' (1 hold, 0 not hold)")
    prompt.add_argument("--box", type=_arg(parse_box), help="a box 'x0,y0,x1,y1' joining every prompt")
    prompt.add_argument("--mode", choices=["per_click", "single"], default="per_click",
                        help="per_click: one mask per hold click, OR-ed (default); single: all points, one prompt")
    prompt.add_argument("--multimask", action="store_true", help="pick the best of SAM's three multimask outputs")
    prompt.add_argument("--min-area", type=_arg(_non_negative), default=0, help="drop masks under this many output pixels")
    out = parser.add_argument_group("outputs")
    out.add_argument("--result-format", choices=["webp", "png", "none"], default="webp",
                     help="the RGBA cut-out (default webp: about 1 MB for 12 MP; png is the old 8-13 MB)")
    out.add_argument("--mask-format", choices=["png1", "png", "none"], default="png1",
                     help="the mask: 1-bit PNG (default) or 8-bit PNG (0/255)")
    out.add_argument("--max-side", type=_arg(_positive), help="scale the outputs so the longest side fits")
    out.add_argument("--per-click-masks", action="store_true", help="also return each click's mask (JSON answers)")
    out.add_argument("--png-level", type=int, choices=range(10), metavar="0-9", help="PNG compression level")
    out.add_argument("--accept", choices=list(ACCEPT_TYPES), help="answer as json, zip, or png (the mask alone)")
    out.add_argument("--out-dir", type=Path, default=Path("out"))
    _add_request_flags(parser)
    return parser


def _add_request_flags(parser: argparse.ArgumentParser) -> None:
    """The "requests" (body format, follow-ups, sessions, async, files) and "checks" groups."""
    flow = parser.add_argument_group("requests")
    flow.add_argument("--format", choices=["auto", "json", "zip", "raw"], default="auto",
                      help="request body: auto (JSON, or the raw file when base64 would pass 6 MiB; zip with --async), "
                           "json, zip, raw")
    flow.add_argument("--follow-up", type=_arg(parse_points), help="clicks sent afterwards on the same photo, 'x,y;x,y'")
    flow.add_argument("--follow-up-labels", type=_arg(parse_labels), help="labels of the --follow-up clicks")
    flow.add_argument("--keep-session", action="store_true",
                      help="open a session (or keep the --follow-up one) and print its id for --session-id")
    flow.add_argument("--close-session", action="store_true", help="close the --session-id session with this request")
    flow.add_argument("--async", dest="use_async", action="store_true", help="the asynchronous endpoint, via S3")
    flow.add_argument("--bucket", help="S3 bucket for --async requests")
    flow.add_argument("--prefix", default="requests", help="S3 key prefix of --async requests (default requests)")
    flow.add_argument("--timeout-s", type=float, default=900.0, help="how long to wait for an --async result")
    flow.add_argument("--save-request", type=Path, metavar="FILE",
                      help="write the request for --test-image to FILE (--format zip, the default here, or json) and send "
                           "nothing: a batch transform input")
    flow.add_argument("--save-embedding", type=Path, metavar="FILE.npz",
                      help="ask for --test-image's embedding alone and write it to FILE (numpy .npz: the array and "
                           "its metadata); taps then go with --embedding FILE, or to the decoder on a device")
    flow.add_argument("--embedding-dtype", choices=list(EMBEDDING_DTYPES), default="float16",
                      help="the --save-embedding array: float16 (2 MiB, default) or float32 (4 MiB)")
    check = parser.add_argument_group("checks")
    check.add_argument("--expect-holds", action="store_true", help="exit 1 when the mask is empty")
    check.add_argument("--verify", action="store_true", help="exit 1 when the answer is inconsistent with the photo")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.save_request is not None:
        return _save_request(args, parser)
    if not args.endpoint_name:
        parser.error("the following arguments are required: --endpoint-name")
    try:
        client = SageMakerSAMClient(args.endpoint_name, args.region, args.endpoint_url)
        if args.health:
            return _health(client, args)
        if args.save_embedding is not None:
            return _save_embedding(client, args, parser)
        return _run(client, args, parser)
    except (EndpointError, ValueError, OSError, BotoCoreError, ClientError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


def _health(client: SageMakerSAMClient, args: argparse.Namespace) -> int:
    """``--health``: print the report; 1 when the endpoint is not healthy."""
    report = client.health()
    print(json.dumps(report))
    if not report["healthy"]:
        what = report.get("status") or f"HTTP {report.get('http_status')}"
        print(f"error: {args.endpoint_url or args.endpoint_name} is not healthy ({what})", file=sys.stderr)
        return 1
    return 0


def _save_embedding(client: SageMakerSAMClient, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--save-embedding``: ask for --test-image's embedding alone and write it (numpy .npz)."""
    if args.test_image is None or args.image_id or args.session_id or args.embedding:
        parser.error("--save-embedding needs --test-image (the photo whose embedding is saved) and no other photo flag")
    embedding = client.get_embedding(args.test_image.read_bytes(), args.embedding_dtype, fmt=args.format,
                                     target_variant=args.target_variant)
    path = embedding.to_npz(args.save_embedding)
    print(json.dumps({"embedding": str(path), "bytes": path.stat().st_size, **{
        key: embedding.metadata.get(key) for key in ("model_id", "dtype", "shape", "image_id", "original_size_hw")}},
                     indent=2))
    return 0


@dataclass(frozen=True)
class _Photo:
    """Where a request's photo comes from: the file (``image``), a saved ``embedding``, or neither (an
    --image-id / --session-id follow-up); ``resend``: --image-id with its photo, resent if unknown."""

    image: bytes | None
    embedding: Embedding | None
    resend: bool


def _run(client: SageMakerSAMClient, args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    photo = _photo(args, parser)
    points = _points(args, photo, parser)
    options: dict[str, Any] = {"box": args.box, "mode": args.mode, "multimask": args.multimask,
                               "min_area": args.min_area}
    outputs = Outputs(args.result_format, args.mask_format, args.max_side, args.per_click_masks, args.png_level)
    result, report = _first_request(client, args, photo, points, options, outputs)
    written = result.save(args.out_dir)
    warnings = result.warnings
    if args.follow_up:
        follow, follow_report = _follow_up_request(client, args, photo, result, options, outputs)
        written += follow.save(args.out_dir, "follow_up_")
        report.update(follow_report)
        warnings += [w for w in follow.warnings if w not in warnings]
    if args.keep_session and result.session_id:
        report["session_id"] = result.session_id
    report.update({"warnings": warnings, "files": [str(p) for p in written]})
    print(json.dumps(report, indent=2))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return _checks(args, result, photo.image)


def _photo(args: argparse.Namespace, parser: argparse.ArgumentParser) -> _Photo:
    """Check that exactly one photo source is given and that the flags fit it; read it."""
    resend = args.image_id is not None and args.test_image is not None  # a follow-up that can resend its photo
    sources = [flag for flag, value in (("--test-image", None if resend else args.test_image),
                                        ("--image-id", args.image_id), ("--session-id", args.session_id),
                                        ("--embedding", args.embedding)) if value is not None]
    if len(sources) != 1:
        parser.error("give exactly one of --test-image, --image-id, --session-id, --embedding" +
                     (f" (got {', '.join(sources)})" if sources else ""))
    if args.use_async and not (args.test_image and args.bucket and not resend):
        parser.error("--async needs --test-image and --bucket (and no --image-id)")
    if args.use_async and args.target_variant:
        parser.error("--target-variant is for real-time requests (InvokeEndpointAsync has no TargetVariant)")
    if args.close_session and not args.session_id:
        parser.error("--close-session closes the --session-id session")
    if args.embedding is not None and args.keep_session:
        parser.error("--keep-session needs a photo: the endpoint keeps no brought embedding")
    image = args.test_image.read_bytes() if args.test_image else None
    return _Photo(image, Embedding.from_npz(args.embedding) if args.embedding else None, resend)


def _points(args: argparse.Namespace, photo: _Photo, parser: argparse.ArgumentParser) -> list[Point]:
    """--points, else the photo's centre (of the file, or of the embedding's original size)."""
    if args.points or args.box is not None:
        return list(args.points or [])
    if photo.image is not None:
        return [centre(photo.image)]
    if photo.embedding is not None:
        height, width = photo.embedding.original_size_hw
        return [(width / 2, height / 2)]
    parser.error("--points or --box is needed with --image-id / --session-id")


def _first_request(client: SageMakerSAMClient, args: argparse.Namespace, photo: _Photo, points: list[Point],
                   options: dict[str, Any], outputs: Outputs) -> tuple[HoldsResult, dict[str, Any]]:
    """The first request (async, a photo, an embedding, or a follow-up by id/session) and its report."""
    report: dict[str, Any] = {}
    if args.use_async:
        assert photo.image is not None
        result = client.extract_async(photo.image, points, args.bucket, args.labels, outputs=outputs, fmt=args.format,
                                      accept=args.accept, prefix=args.prefix, timeout_s=args.timeout_s, **options)
        report["async_s"] = round(result.latency_s, 3)
    elif photo.embedding is not None or (photo.image is not None and not photo.resend):
        result = client.extract(photo.image if photo.embedding is None else None, points, args.labels, outputs=outputs,
                                fmt=args.format, accept=args.accept, embedding=photo.embedding,
                                open_session=(bool(args.follow_up) or args.keep_session) and photo.embedding is None,
                                target_variant=args.target_variant, **options)
        report["first_request_s"] = round(result.latency_s, 3)
    else:
        result = client.follow_up(points, args.labels, image_id=args.image_id, session_id=args.session_id,
                                  outputs=outputs, accept=args.accept, close_session=args.close_session,
                                  target_variant=args.target_variant, photo=photo.image, **options)
        report["request_s"] = round(result.latency_s, 3)
        if result.resent_photo:
            report["resent_photo"] = True
    if result.variant is not None:
        report["variant"] = result.variant
    report.update({"image_id": result.image_id, "cache_hit": result.metadata.get("cache_hit"),
                   "empty": result.metadata.get("empty"), "server_timings_ms": result.metadata.get("timings_ms")})
    return result, report


def _follow_up_request(client: SageMakerSAMClient, args: argparse.Namespace, photo: _Photo, first: HoldsResult,
                       options: dict[str, Any], outputs: Outputs) -> tuple[HoldsResult, dict[str, Any]]:
    """``--follow-up``: the clicks sent afterwards on the same photo (or embedding), and their report."""
    if args.use_async:
        assert photo.image is not None
        follow = client.extract_async(photo.image, args.follow_up, args.bucket, args.follow_up_labels, outputs=outputs,
                                      fmt=args.format, accept=args.accept, prefix=args.prefix,
                                      timeout_s=args.timeout_s, **options)
    elif photo.embedding is not None:
        follow = client.extract(None, args.follow_up, args.follow_up_labels, outputs=outputs, fmt=args.format,
                                accept=args.accept, embedding=photo.embedding, target_variant=args.target_variant,
                                **options)
    else:
        follow = client.follow_up_of(first, args.follow_up, args.follow_up_labels, outputs=outputs,
                                     accept=args.accept, close_session=not args.keep_session, **options)
    report = {"follow_up_s": round(follow.latency_s, 3), "follow_up_cache_hit": follow.metadata.get("cache_hit"),
              "server_follow_up_ms": follow.metadata.get("timings_ms")}
    if follow.variant is not None:
        report["follow_up_variant"] = follow.variant
    if follow.resent_photo:
        report["follow_up_resent_photo"] = True
    return follow, report


def _checks(args: argparse.Namespace, result: HoldsResult, image: bytes | None) -> int:
    """--verify and --expect-holds: 1 (with one line on stderr) when the answer fails them."""
    if args.verify and image is not None:
        problems = verify(result, image)
        if problems:
            print("error: wrong answer: " + "; ".join(problems), file=sys.stderr)
            return 1
    if args.expect_holds and (result.mask_image is None or mask_is_empty(result.mask_image)):
        print("error: the endpoint found no hold at the given points", file=sys.stderr)
        return 1
    return 0


def _save_request(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``--save-request``: one request file (a batch transform input), nothing sent."""
    if args.test_image is None or args.image_id or args.session_id:
        parser.error("--save-request needs --test-image (a request file carries its photo)")
    fmt: RequestFormat = "zip" if args.format == "auto" else args.format
    try:
        image = args.test_image.read_bytes()
        points = args.points or ([] if args.box is not None else [centre(image)])
        outputs = Outputs(args.result_format, args.mask_format, args.max_side, args.per_click_masks, args.png_level)
        body, content_type = request_file(image, points, args.labels, args.box, mode=args.mode,
                                          multimask=args.multimask, min_area=args.min_area, outputs=outputs, fmt=fmt)
        args.save_request.parent.mkdir(parents=True, exist_ok=True)
        args.save_request.write_bytes(body)
    except (ValueError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(json.dumps({"request": str(args.save_request), "content_type": content_type, "bytes": len(body)}))
    return 0
