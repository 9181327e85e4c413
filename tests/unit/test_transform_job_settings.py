"""The rehearsal's CreateTransformJob checks and SageMaker's order of precedence for a job's settings."""

from __future__ import annotations

from rehearsal.transform_jobs import check_create, resolve_settings


def test_job_values_win_over_the_container_and_defaults_come_last() -> None:
    container = {"MaxConcurrentTransforms": 4, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 25}
    job = resolve_settings({"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 10, "BatchStrategy": "MultiRecord"}, container)
    assert (job.max_concurrent, job.max_payload_mb, job.batch_strategy) == (2, 10, "MULTI_RECORD")
    asked = resolve_settings({}, container)
    assert (asked.max_concurrent, asked.max_payload_mb, asked.batch_strategy) == (4, 25, "SINGLE_RECORD")
    default = resolve_settings({}, {})
    assert (default.max_concurrent, default.max_payload_mb, default.batch_strategy) == (1, 6, "MULTI_RECORD")


def test_create_transform_job_is_checked_as_sagemaker_does() -> None:
    source = {"TransformInput": {"DataSource": {"S3DataSource": {"S3Uri": "s3://b/in/"}}},
              "TransformOutput": {"S3OutputPath": "s3://b/out/"}}
    assert check_create({**source, "MaxPayloadInMB": 100, "MaxConcurrentTransforms": 1}) is None
    assert "over the maximum of 100" in str(check_create({**source, "MaxPayloadInMB": 101}))
    assert "must not exceed 100" in str(check_create({**source, "MaxPayloadInMB": 30, "MaxConcurrentTransforms": 4}))
    assert "S3OutputPath" in str(check_create({**source, "TransformOutput": {"S3OutputPath": "/tmp/out"}}))
