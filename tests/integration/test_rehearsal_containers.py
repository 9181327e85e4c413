"""The rehearsal honours the instance count (issue 23): a variant with 2 instances gets 2 real
containers, started by the data plane with the environment its model was created with, and every
follow-up by ``image_id`` is answered by either of them through one real redis-server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sagemaker_client import SageMakerSAMClient
from serving.local_endpoint import ping_status
from synthetic.test_images import synthetic_image
from tests.integration.rehearsal_stack import Rehearsal, rehearsal, wait_http
from tests.integration.server import free_port
from tests.redis_server import redis_server
from tests.reference import decode_mask, encode, in_process_mask

ENDPOINT = "sam-fleet"
POINTS = [(120.0, 200.0), (400.0, 90.0)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    with rehearsal(tmp_path_factory.mktemp("fleet"), "http://127.0.0.1:9") as stack:
        yield stack


def _create_endpoint(stack: Rehearsal, environment: dict[str, str], instances: int) -> None:
    sagemaker = stack.client("sagemaker")
    sagemaker.create_model(ModelName="sam-fleet-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                           PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sam:cpu",
                                             "Environment": environment})
    sagemaker.create_endpoint_config(EndpointConfigName="sam-fleet-config", ProductionVariants=[
        {"VariantName": "Primary", "ModelName": "sam-fleet-model", "InitialInstanceCount": instances,
         "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 1.0}])
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="sam-fleet-config")


def test_two_instances_are_two_containers_and_every_follow_up_is_answered(
        stack: Rehearsal, tiny_model_dir: Path, tmp_path: Path) -> None:
    with redis_server() as (_, store_url):
        _create_endpoint(stack, {"SAM_SHARED_CACHE_URL": store_url, "SAM_LOG_FORMAT": "json"}, instances=2)
        port, logs = free_port(), tmp_path / "containers"
        env = {**os.environ, **stack.env}
        env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
        plane = subprocess.Popen([sys.executable, "-m", "rehearsal.data_plane", "--serve-model-dir",
                                  str(tiny_model_dir), "--endpoint-name", ENDPOINT, "--container-log-dir", str(logs),
                                  "--seed", "3", "--port", str(port)],
                                 stdout=(tmp_path / "plane.log").open("wb"), stderr=subprocess.STDOUT, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}/ping", plane, deadline_s=300)
            assert sorted(path.name for path in logs.iterdir()) == ["Primary-0.log", "Primary-1.log"]
            client = SageMakerSAMClient(ENDPOINT, "us-east-1", f"http://127.0.0.1:{port}")
            photo = encode(synthetic_image((480, 640), seed=71), "JPEG", quality=90)
            opened = client.extract(photo, POINTS)
            for index in range(8):
                clicks = [POINTS[index % 2]]
                follow = client.follow_up_of(opened, clicks)
                assert follow.mask_image is not None
                assert np.array_equal(decode_mask(follow.mask_image), in_process_mask(tiny_model_dir, photo, clicks))
            served = [path.read_text().count("/invocations") for path in sorted(logs.iterdir())]
            assert all(count > 0 for count in served), served  # both containers answered
        finally:
            plane.terminate()
            plane.wait(60)
        urls = re.findall(r"http://127\.0\.0\.1:\d+", (tmp_path / "plane.log").read_text())
        assert len(set(urls)) == 2 and all(ping_status(url) == 0 for url in urls)  # they went with the data plane


def test_a_plan_over_the_bound_is_refused(stack: Rehearsal) -> None:
    from rehearsal.containers import MAX_INSTANCES_PER_VARIANT, plan_variants

    sagemaker = stack.client("sagemaker")
    sagemaker.create_model(ModelName="sam-big-model", ExecutionRoleArn="arn:aws:iam::123456789012:role/x",
                           PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sam:cpu"})
    sagemaker.create_endpoint_config(EndpointConfigName="sam-big-config", ProductionVariants=[
        {"VariantName": "Primary", "ModelName": "sam-big-model", "InitialInstanceCount": MAX_INSTANCES_PER_VARIANT + 1,
         "InstanceType": "ml.c5.xlarge", "InitialVariantWeight": 1.0}])
    sagemaker.create_endpoint(EndpointName="sam-big", EndpointConfigName="sam-big-config")
    with pytest.raises(ValueError, match="at most"):
        plan_variants(sagemaker, "sam-big")
