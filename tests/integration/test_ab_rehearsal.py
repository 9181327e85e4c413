"""A/B variants rehearsed end to end: deploy_to_sagemaker.sh turns a single-variant endpoint into an
A/B test, each variant's container runs the model the deploy packaged for it (a real server process
per variant, with the environment the deploy gave its model), the data-plane stand-in routes by
weight and honours TargetVariant, `shift` moves traffic, `promote` ends the test. Every answer's
mask is compared with the in-process answer of the model of the variant that says it answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from holds_client import EndpointError, HoldsResult, SageMakerSAMClient
from serving.local_endpoint import start_local_endpoint
from synthetic.wall_photo import WallPhoto, wall_photo
from tests.integration.rehearsal_stack import BUCKET, Rehearsal, nothing_left, rehearsal
from tests.integration.server import REPO, LocalEndpoint, free_port, log_records
from tests.reference import decode_mask, in_process_mask

ENDPOINT = "sam-climbing-endpoint"
AB_SETTINGS = ["VARIANT_B_INSTANCE_TYPE=ml.m5.large"]  # + VARIANT_B_MODEL_DIR; A: the plain (single-variant) settings
#: The single-variant endpoint's scaling off, the update to the A/B config, both variants' scaling on.
AB_UPDATE_SEQUENCE = [
    "sagemaker:CreateModel", "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
    "application-autoscaling:DeleteScalingPolicy", "monitoring:DeleteAlarms",
    "application-autoscaling:DeregisterScalableTarget", "sagemaker:UpdateEndpoint",
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
]
#: promote: traffic first, then the loser's scaling off, then the one-variant config and the update.
PROMOTE_SEQUENCE = [
    "sagemaker:UpdateEndpointWeightsAndCapacities",
    "application-autoscaling:DeleteScalingPolicy", "application-autoscaling:DeregisterScalableTarget",
    "sagemaker:CreateEndpointConfig", "sagemaker:UpdateEndpoint",
]


@dataclass
class AB:
    """The running A/B rehearsal: the stack, each variant's port and container, and the test photo."""

    stack: Rehearsal
    ports: dict[str, int]
    containers: dict[str, LocalEndpoint]
    model_dirs: dict[str, Path]
    photo: WallPhoto
    points: list[tuple[float, float]]
    expected: dict[str, NDArray[np.bool_]]

    def client(self) -> SageMakerSAMClient:
        return SageMakerSAMClient(ENDPOINT, endpoint_url=self.stack.plane_url)


@pytest.fixture(scope="module")
def ab(tiny_model_dir: Path, tiny_model_dir_b: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AB]:
    """moto, the control plane, and a data plane whose variants Primary and Challenger are two ports
    on which the test starts each variant's container once the deploy has made its model."""
    ports = {"Primary": free_port(), "Challenger": free_port()}
    photo = wall_photo(320, 240, holds=6, seed=3, orientation=1)
    points = photo.clicks(2)
    expected = {"Primary": in_process_mask(tiny_model_dir, photo.jpeg, points),
                "Challenger": in_process_mask(tiny_model_dir_b, photo.jpeg, points)}
    assert not np.array_equal(expected["Primary"], expected["Challenger"])  # a swapped variant would show
    containers: dict[str, LocalEndpoint] = {}
    with rehearsal(tmp_path_factory.mktemp("ab"), {name: f"http://127.0.0.1:{port}" for name, port in ports.items()},
                   seed=5) as stack:
        try:
            yield AB(stack, ports, containers, {"Primary": tiny_model_dir, "Challenger": tiny_model_dir_b}, photo,
                     points, expected)
        finally:
            for container in containers.values():
                container.stop()


def _start_variant_containers(ab: AB, tmp_path: Path) -> None:
    """As SageMaker does: each variant's container on its model's model.tar.gz, with the model's environment."""
    sagemaker, s3 = ab.stack.client("sagemaker"), ab.stack.client("s3")
    config = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"])
    for variant in config["ProductionVariants"]:
        name = variant["VariantName"]
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        bucket, key = container["ModelDataUrl"][5:].split("/", 1)
        archive, model_dir = tmp_path / f"{name}.tar.gz", tmp_path / f"model-{name}"
        s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir, filter="data")
        ab.containers[name] = start_local_endpoint(model_dir, tmp_path / f"{name}.log", container["Environment"],
                                                   port=ab.ports[name])


def _changes(calls: list[dict[str, Any]]) -> list[str]:
    return [f"{c['service']}:{c['operation']}" for c in calls
            if not c["operation"].startswith(("Describe", "List", "Get", "Head", "PUT ", "GET ", "HEAD "))]


def _wait_in_service(stack: Rehearsal) -> None:
    stack.client("sagemaker").get_waiter("endpoint_in_service").wait(
        EndpointName=ENDPOINT, WaiterConfig={"Delay": 1, "MaxAttempts": 30})


def _assert_answer(ab: AB, result: HoldsResult, variant: str | None = None) -> str:
    """The answer's mask is the in-process mask of the model of the variant it names; returns that variant."""
    assert result.variant in ab.expected, result.variant
    if variant is not None:
        assert result.variant == variant
    assert result.mask_image is not None
    assert np.array_equal(decode_mask(result.mask_image), ab.expected[result.variant]), result.variant
    return result.variant


def test_ab_test_from_a_single_variant_endpoint_to_promotion(ab: AB, tmp_path: Path) -> None:
    stack, model_a, model_b = ab.stack, ab.model_dirs["Primary"], ab.model_dirs["Challenger"]
    single = stack.deploy(tmp_path, model_a, "package", "model", "config", "endpoint", "autoscale")
    assert single.returncode == 0, single.stderr
    sagemaker = stack.client("sagemaker")
    sagemaker.update_endpoint_weights_and_capacities(  # what autoscaling did under load
        EndpointName=ENDPOINT, DesiredWeightsAndCapacities=[{"VariantName": "Primary", "DesiredInstanceCount": 2}])
    _wait_in_service(stack)

    ab_settings = [*AB_SETTINGS, f"VARIANT_B_MODEL_DIR={model_b}"]
    checked = stack.deploy(tmp_path, model_a, *ab_settings, "check", "package")
    assert checked.returncode == 0, checked.stderr
    assert ("Primary on ml.g4dn.xlarge: CUDA 12 image, InferenceAmiVersion al2-ami-sagemaker-inference-gpu-2-1 (driver "
            "535); Challenger on ml.m5.large: CPU image") in checked.stderr
    planned = stack.deploy(tmp_path, model_a, *ab_settings, "--dry-run", "model", "config", "endpoint")
    assert planned.returncode == 0, planned.stderr
    assert "--retain-all-variant-properties --exclude-retained-variant-properties VariantPropertyType=DesiredWeight" \
        in planned.stdout  # the counts stay, the A/B config's weights apply

    stack.calls(clear=True)
    updated = stack.deploy(tmp_path, model_a, *ab_settings, "model", "config", "endpoint", "autoscale")
    assert updated.returncode == 0, updated.stderr
    assert _changes(stack.calls()) == AB_UPDATE_SEQUENCE
    _check_ab_endpoint(ab)
    _start_variant_containers(ab, tmp_path)
    tested = stack.deploy(tmp_path, model_a, *ab_settings, "test")
    assert tested.returncode == 0, tested.stderr
    assert "test passed for variant Primary" in tested.stderr and "test passed for variant Challenger" in tested.stderr

    _routing_follows_weights_and_target_variant(ab)
    _follow_ups_belong_to_the_variant_that_answered(ab, tmp_path)
    _shift_moves_traffic(ab, tmp_path)
    _metrics_carry_the_variant(ab)
    _promote_ends_the_test(ab, tmp_path)
    deleted = stack.deploy(tmp_path, model_a, "delete")
    assert deleted.returncode == 0, deleted.stderr
    nothing_left(stack)


def _check_ab_endpoint(ab: AB) -> None:
    sagemaker, s3 = ab.stack.client("sagemaker"), ab.stack.client("s3")
    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    variants = {v["VariantName"]: v for v in endpoint["ProductionVariants"]}
    assert {name: (v["CurrentWeight"], v["CurrentInstanceCount"]) for name, v in variants.items()} == {
        "Primary": (90.0, 2), "Challenger": (10.0, 1)}  # the config's weights; Primary keeps its 2 instances
    config = {v["VariantName"]: v for v in sagemaker.describe_endpoint_config(
        EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"]}
    assert config["Primary"]["InstanceType"] == "ml.g4dn.xlarge" and config["Challenger"]["InstanceType"] == "ml.m5.large"
    assert config["Primary"]["InferenceAmiVersion"] == "al2-ami-sagemaker-inference-gpu-2-1"
    assert "InferenceAmiVersion" not in config["Challenger"]  # a CPU type has no GPU driver to choose
    for name, variant in config.items():
        container = sagemaker.describe_model(ModelName=variant["ModelName"])["PrimaryContainer"]
        assert container["Environment"]["SAM_VARIANT_NAME"] == name
        assert container["ModelDataUrl"] == f"s3://{BUCKET}/sam-climbing/{name}/model.tar.gz"
        assert s3.head_object(Bucket=BUCKET, Key=f"sam-climbing/{name}/model.tar.gz")["Metadata"]["sha256"]
    scaling = ab.stack.client("application-autoscaling")
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert sorted(t["ResourceId"] for t in targets) == [f"endpoint/{ENDPOINT}/variant/Challenger",
                                                         f"endpoint/{ENDPOINT}/variant/Primary"]


def _routing_follows_weights_and_target_variant(ab: AB) -> None:
    client = ab.client()
    answered = Counter(_assert_answer(ab, client.extract(ab.photo.jpeg, ab.points)) for _ in range(40))
    assert set(answered) == {"Primary", "Challenger"} and answered["Challenger"] <= 12, answered  # 90/10
    for _ in range(3):
        _assert_answer(ab, client.extract(ab.photo.jpeg, ab.points, target_variant="Challenger"), "Challenger")
    with pytest.raises(EndpointError) as unknown:
        client.extract(ab.photo.jpeg, ab.points, target_variant="Nope")
    assert unknown.value.status == 400 and "ValidationError" in str(unknown.value) and "'Nope'" in str(unknown.value)


def _follow_ups_belong_to_the_variant_that_answered(ab: AB, tmp_path: Path) -> None:
    """An image_id is cached only by the variant that answered: an unpinned follow-up can reach the
    other variant (404 unknown_image_id); pinned to the first answer's variant it works. A session's
    follow-ups stick to the session's variant (SageMaker's sticky routing), pinned or not."""
    client = ab.client()
    photo = wall_photo(320, 240, holds=6, seed=21, orientation=1)  # not yet cached by either variant
    first = client.extract(photo.jpeg, ab.points, target_variant="Challenger")
    assert first.variant == "Challenger" and first.image_id
    follow = [ab.points[0]]
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(client.follow_up(follow, image_id=first.image_id).variant)
        except EndpointError as exc:
            assert exc.status == 404 and "unknown_image_id" in str(exc), exc
            outcomes.append("404")
    assert "404" in outcomes, outcomes  # mostly Primary (90%), which never saw the photo
    for _ in range(3):
        pinned = client.follow_up_of(first, follow)
        assert pinned.variant == "Challenger" and pinned.metadata["cache_hit"] is True
        assert np.array_equal(decode_mask(pinned.mask_image or b""), in_process_mask(ab.model_dirs["Challenger"],
                                                                                      photo.jpeg, follow))
    opened = client.extract(photo.jpeg, ab.points, open_session=True)
    assert opened.session_id and opened.variant in ab.expected
    for _ in range(8):
        sticky = client.follow_up(follow, session_id=opened.session_id)
        assert sticky.variant == opened.variant and sticky.metadata["cache_hit"] is True
    client.close_session(opened.session_id, target_variant=opened.variant)

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    cli = subprocess.run(
        [sys.executable, str(REPO / "sagemaker_client.py"), "--endpoint-name", ENDPOINT, "--endpoint-url",
         ab.stack.plane_url, "--test-image", str(_write(tmp_path / "wall.jpg", ab.photo.jpeg)), "--points",
         ";".join(f"{x},{y}" for x, y in ab.points), "--follow-up", f"{ab.points[1][0]},{ab.points[1][1]}",
         "--target-variant", "Challenger", "--out-dir", str(tmp_path / "cli")],
        capture_output=True, text=True, env={**env, "HOME": str(tmp_path)}, timeout=300, check=False)
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["variant"] == "Challenger" and report["follow_up_variant"] == "Challenger"
    assert np.array_equal(decode_mask((tmp_path / "cli" / "mask.png").read_bytes()), ab.expected["Challenger"])
    assert np.array_equal(decode_mask((tmp_path / "cli" / "follow_up_mask.png").read_bytes()),
                          in_process_mask(ab.model_dirs["Challenger"], ab.photo.jpeg, [ab.points[1]]))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _shift_moves_traffic(ab: AB, tmp_path: Path) -> None:
    stack, model = ab.stack, ab.model_dirs["Primary"]
    stack.calls(clear=True)
    shifted = stack.deploy(tmp_path, model, "shift", "Primary:0", "Challenger:100")
    assert shifted.returncode == 0, shifted.stderr
    assert "traffic now: Primary 0% (weight 0), Challenger 100% (weight 100)" in shifted.stderr
    assert _changes(stack.calls()) == ["sagemaker:UpdateEndpointWeightsAndCapacities"]
    client = ab.client()
    assert {_assert_answer(ab, client.extract(ab.photo.jpeg, ab.points)) for _ in range(10)} == {"Challenger"}
    _assert_answer(ab, client.extract(ab.photo.jpeg, ab.points, target_variant="Primary"), "Primary")  # weight 0, pinned
    counts = {v["VariantName"]: v["CurrentInstanceCount"] for v in
              stack.client("sagemaker").describe_endpoint(EndpointName=ENDPOINT)["ProductionVariants"]}
    assert counts == {"Primary": 2, "Challenger": 1}  # a weight change keeps the instance counts
    for args, message in ((["shift", "Nope:1"], "has no variant Nope (it has: Primary Challenger)"),
                          (["shift", "Primary:lots"], "the weight in 'Primary:lots' must be a number >= 0"),
                          (["shift", "Challenger:0"], "these weights send no traffic anywhere"),
                          (["promote", "Nope"], "has no variant Nope")):
        refused = stack.deploy(tmp_path, model, *args)
        assert refused.returncode == 1 and message in refused.stderr, (args, refused.stderr)
    back = stack.deploy(tmp_path, model, "shift", "Primary:50", "Challenger:50")
    assert back.returncode == 0 and "Primary 50% (weight 50), Challenger 50% (weight 50)" in back.stderr, back.stderr


def _metrics_carry_the_variant(ab: AB) -> None:
    for name, container in ab.containers.items():
        emf = [r for r in log_records(container) if "_aws" in r]
        assert emf, name
        for record in emf:
            assert record["EndpointName"] == ENDPOINT and record["VariantName"] == name
            assert record["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["EndpointName"], ["EndpointName", "VariantName"]]
        assert any(r.get("ClientErrors") == 1 for r in emf) == (name == "Primary")  # the 404s were Primary's


def _promote_ends_the_test(ab: AB, tmp_path: Path) -> None:
    stack = ab.stack
    sagemaker, scaling = stack.client("sagemaker"), stack.client("application-autoscaling")
    before = sagemaker.describe_endpoint_config(
        EndpointConfigName=sagemaker.describe_endpoint(EndpointName=ENDPOINT)["EndpointConfigName"])
    stack.calls(clear=True)
    promoted = stack.deploy(tmp_path, ab.model_dirs["Primary"], "promote", "Primary")
    assert promoted.returncode == 0, promoted.stderr
    calls = stack.calls()
    assert _changes(calls) == PROMOTE_SEQUENCE
    weights_at = next(i for i, c in enumerate(calls) if c["operation"] == "UpdateEndpointWeightsAndCapacities")
    scaling_off_at = next(i for i, c in enumerate(calls) if c["operation"] == "DeleteScalingPolicy")
    update_at = next(i for i, c in enumerate(calls) if c["operation"] == "UpdateEndpoint")
    waited = [c["endpoint_status"] for c in calls[weights_at:scaling_off_at] if c["operation"] == "DescribeEndpoint"]
    assert waited[0] == "Updating" and waited[-1] == "InService", waited  # traffic moved before anything is removed
    after_update = [c["endpoint_status"] for c in calls[update_at:] if c["operation"] == "DescribeEndpoint"]
    assert after_update[0] == "Updating" and after_update[-1] == "InService", after_update
    assert all(c["status"] == 200 for c in calls), [c for c in calls if c["status"] != 200]

    endpoint = sagemaker.describe_endpoint(EndpointName=ENDPOINT)
    assert [(v["VariantName"], v["CurrentWeight"], v["CurrentInstanceCount"]) for v in endpoint["ProductionVariants"]] \
        == [("Primary", 1.0, 2)]  # all traffic, and its scaled-out instance count kept
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"]
    old_primary = next(v for v in before["ProductionVariants"] if v["VariantName"] == "Primary")
    assert config == [{**old_primary, "InitialVariantWeight": 1.0}]  # the same model, type and AMI
    targets = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert [t["ResourceId"] for t in targets] == [f"endpoint/{ENDPOINT}/variant/Primary"]  # the winner keeps scaling
    policies = scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert [p["ResourceId"] for p in policies] == [f"endpoint/{ENDPOINT}/variant/Primary"]
    client = ab.client()
    assert {_assert_answer(ab, client.extract(ab.photo.jpeg, ab.points)) for _ in range(6)} == {"Primary"}
    with pytest.raises(EndpointError, match="'Challenger'"):
        client.extract(ab.photo.jpeg, ab.points, target_variant="Challenger")
    again = stack.deploy(tmp_path, ab.model_dirs["Primary"], "promote", "Primary")
    assert again.returncode == 1 and "already the only variant" in again.stderr


@pytest.mark.parametrize("settings,message", [
    (["VARIANT_B_INSTANCE_TYPE=ml.m5.large"], "an A/B deploy needs VARIANT_B_MODEL_DIR"),
    (["VARIANT_B_MODEL_DIR=models/x", "VARIANT_B_NAME=Primary"], "both variants are named Primary"),
    (["VARIANT_B_MODEL_DIR=models/x", "VARIANT_A_WEIGHT=0", "VARIANT_B_WEIGHT=0"], "are both 0"),
    (["VARIANT_B_MODEL_DIR=models/x", "VARIANT_B_WEIGHT=ten"], "must be numbers >= 0, not 'ten'"),
    (["VARIANT_B_MODEL_DIR=models/x", "VARIANT_B_NAME=not_ok"], "variant name 'not_ok' must be"),
    (["VARIANT_B_MODEL_DIR=models/x", "--mode", "async"], "A/B variants are for real-time endpoints"),
    (["VARIANT_B_MODEL_DIR=models/x", "VARIANT_B_INSTANCE_TYPE=ml.m5.large", "VARIANT_B_INFERENCE_AMI_VERSION=al2-ami-sagemaker-inference-gpu-2-1"],
     "is for GPU instance types, not ml.m5.large"),
])
def test_ab_settings_are_checked_before_anything_runs(ab: AB, tmp_path: Path, settings: list[str], message: str) -> None:
    result = ab.stack.deploy(tmp_path, ab.model_dirs["Primary"], *settings, "--dry-run", "config")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "DRY-RUN" not in result.stdout


def test_shift_and_promote_need_their_arguments(ab: AB, tmp_path: Path) -> None:
    for args, message in ((["shift"], "shift needs VARIANT:WEIGHT pairs"), (["promote"], "promote needs the name"),
                          (["batch", "s3://b/in/"], "batch needs INPUT_S3_PREFIX OUTPUT_S3_PREFIX")):
        result = ab.stack.deploy(tmp_path, ab.model_dirs["Primary"], *args)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
    missing = ab.stack.deploy(tmp_path, ab.model_dirs["Primary"], "ENDPOINT_NAME=no-such-endpoint", "shift", "A:1")
    assert missing.returncode == 1 and "endpoint no-such-endpoint does not exist" in missing.stderr


def test_each_variant_gets_the_image_of_its_instance_type(ab: AB, tmp_path: Path) -> None:
    """Without IMAGE_URI: one build per image flavour (GPU CUDA 12 for g4dn, CPU for m5), each model on its own."""
    result = ab.stack.deploy(tmp_path, ab.model_dirs["Primary"], "IMAGE_URI=", "VARIANT_B_MODEL_DIR=models/x",
                             "VARIANT_B_INSTANCE_TYPE=ml.m5.large", "--dry-run", "image", "model",
                             "config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    builds = [line for line in lines if line.startswith("DRY-RUN: docker build")]
    assert len(builds) == 2 and "--build-arg VARIANT=gpu --build-arg CUDA_MAJOR=12" in builds[0]
    assert "--build-arg VARIANT=cpu" in builds[1] and "/sam-climbing:cpu-" in builds[1]
    models = [line for line in lines if "create-model" in line]
    assert len(models) == 2 and "/sam-climbing:gpu-cu12-" in models[0] and "/sam-climbing:cpu-" in models[1]
    assert "sam-climbing/Primary/model.tar.gz" in models[0] and "sam-climbing/Challenger/model.tar.gz" in models[1]
    config = next(line for line in lines if "create-endpoint-config" in line)
    assert '\\"VariantName\\":\\"Primary\\"' in config and '\\"VariantName\\":\\"Challenger\\"' in config
    assert '\\"InitialVariantWeight\\":90' in config and '\\"InitialVariantWeight\\":10' in config
