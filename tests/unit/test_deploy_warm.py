"""`batch --warm` on the command line, the warm job's ContentType, and the report's totals."""

from __future__ import annotations

import pytest

from deploy.aws import Aws
from deploy.cli import UsageError, parse_args
from deploy.run import Run
from deploy.settings import settings_from_env
from deploy.warm import photo_content_type, totals_of


def _run(**environ: str) -> Run:
    settings = settings_from_env({"S3_BUCKET": "b", **environ}, "us-east-1")
    return Run.create(settings, Aws.from_environment("us-east-1", dry_run=True))


def test_batch_warm_on_the_command_line() -> None:
    invocation = parse_args(["package", "batch", "--warm", "s3://b/photos/", "s3://b/warmed/", "batch", "s3://b/in/",
                             "s3://b/out/"])
    assert invocation is not None
    assert [(c.name, c.args) for c in invocation.commands] == [
        ("package", ()), ("batch-warm", ("s3://b/photos/", "s3://b/warmed/")), ("batch", ("s3://b/in/", "s3://b/out/"))]
    with pytest.raises(UsageError, match="batch needs INPUT_S3_PREFIX OUTPUT_S3_PREFIX"):
        parse_args(["batch", "--warm", "s3://b/photos/"])


def test_the_warm_jobs_content_type() -> None:
    run = _run()
    assert photo_content_type(run, ["a/x.JPG", "a/b/y.jpeg"]) == "image/jpeg"
    assert photo_content_type(run, ["x.png", "y.png"]) == "image/png"
    assert photo_content_type(run, ["x.webp"]) == "image/webp"
    assert photo_content_type(run, ["x.png", "y.jpg", ".DS_Store"]) == "image/jpeg"  # the container reads the bytes
    assert photo_content_type(_run(BATCH_CONTENT_TYPE="image/png"), ["x.jpg"]) == "image/png"


def test_totals_count_outcomes_reasons_and_bytes() -> None:
    photos = [{"key": "a", "outcome": "stored", "stored_bytes": 10}, {"key": "b", "outcome": "stored", "stored_bytes": 5},
              {"key": "c", "outcome": "already_present", "stored_bytes": 0},
              {"key": "d", "outcome": "refused", "reason": "invalid_image", "stored_bytes": 0},
              {"key": "e", "outcome": "refused", "reason": "no_answer", "stored_bytes": 0},
              {"key": "f", "outcome": "refused", "reason": "invalid_image", "stored_bytes": 0}]
    assert totals_of(photos) == {"photos": 6, "stored": 2, "already_present": 1,
                                 "refused": {"invalid_image": 2, "no_answer": 1}, "stored_bytes": 15}
