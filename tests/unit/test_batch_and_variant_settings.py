"""The container's side of A/B variants and batch transform: SAM_VARIANT_NAME in the EMF metrics,
SageMaker's batch payload variable, and the /execution-parameters answer."""

from __future__ import annotations

import pytest

from serving.batch import execution_parameters
from serving.config import ServerSettings
from serving.metrics import emf_record


def test_variant_name_adds_a_dimension_set_and_keeps_the_endpoint_one() -> None:
    record = emf_record("SamHolds", "ep", {"cache_hit": True}, 12.5, 200, timestamp_ms=1, variant="Challenger")
    directive = record["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [["EndpointName"], ["EndpointName", "VariantName"]]
    assert record["EndpointName"] == "ep" and record["VariantName"] == "Challenger"
    plain = emf_record("SamHolds", "ep", {}, 1.0, 500, timestamp_ms=1)
    assert plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["EndpointName"]] and "VariantName" not in plain


def test_variant_name_is_read_and_checked() -> None:
    assert ServerSettings.from_env({"SAM_VARIANT_NAME": "Challenger-2"}).variant_name == "Challenger-2"
    assert ServerSettings.from_env({}).variant_name is None
    with pytest.raises(ValueError, match="SAM_VARIANT_NAME"):
        ServerSettings.from_env({"SAM_VARIANT_NAME": "bad name"})


@pytest.mark.parametrize("environ,body_bytes", [
    ({}, 6 << 20),
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "25"}, 25 << 20),  # a batch transform's MaxPayloadInMB
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "25", "SAM_MAX_BODY_BYTES": "30MiB"}, 30 << 20),  # ours wins
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0"}, 6 << 20),  # 0: SageMaker's "chunked, unbounded": keep our limit
])
def test_batch_payload_sets_the_body_limit_unless_sam_max_body_bytes_does(environ: dict[str, str], body_bytes: int) -> None:
    assert ServerSettings.from_env(environ).max_body_bytes == body_bytes


@pytest.mark.parametrize("environ,expected", [
    ({}, {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 6}),
    ({"SAM_MAX_BODY_BYTES": "25MiB"}, {"MaxConcurrentTransforms": 4, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 25}),
    ({"SAM_MAX_BODY_BYTES": "256MiB"}, {"MaxConcurrentTransforms": 1, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 100}),
    ({"SAM_MAX_BODY_BYTES": "100000"}, {"MaxConcurrentTransforms": 8, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 1}),
    ({"SAM_MAX_BODY_BYTES": "10MiB", "SAM_WORKER_THREADS": "2"},
     {"MaxConcurrentTransforms": 2, "BatchStrategy": "SINGLE_RECORD", "MaxPayloadInMB": 10}),
])
def test_execution_parameters_stay_within_sagemakers_bounds(environ: dict[str, str], expected: dict[str, object]) -> None:
    answer = execution_parameters(ServerSettings.from_env(environ))
    assert answer == expected
    assert answer["MaxConcurrentTransforms"] * answer["MaxPayloadInMB"] <= 100
