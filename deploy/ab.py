"""A/B tests on one endpoint: `shift` moves traffic between the production variants, `promote`
ends the test."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from deploy.aws import DeployError, aws_error, dry_run_line, info
from deploy.realtime import unique_suffix
from deploy.run import Run
from deploy.scaling import Scaling, resource_id, scaling_suspended
from deploy.values import weight
from deploy.waits import NotInService, wait_for_endpoint


@dataclass(frozen=True)
class Serving:
    """A variant as the endpoint serves it."""

    name: str
    weight: float
    instances: int | None


def serving_variants(run: Run) -> tuple[str, list[Serving]]:
    """(endpoint config, variants) of the endpoint; stops unless it is InService."""
    described = run.aws.describe_endpoint(run.endpoint)
    if described is None:
        raise DeployError(f"endpoint {run.endpoint} does not exist")
    if described["EndpointStatus"] != "InService":
        raise DeployError(f"endpoint {run.endpoint} is {described['EndpointStatus']}: wait until it is InService")
    variants = [Serving(v["VariantName"], float(v.get("CurrentWeight", 1.0)), v.get("CurrentInstanceCount"))
                for v in described.get("ProductionVariants", [])]
    return str(described["EndpointConfigName"]), variants


def traffic_split(variants: list[Serving]) -> str:
    """E.g. "Primary 75% (weight 75), Challenger 25% (weight 25)"."""
    total = sum(v.weight for v in variants)
    return ", ".join(f"{v.name} {100 * v.weight / total if total > 0 else 0:.4g}% (weight {v.weight:g})"
                     for v in variants)


def _known(run: Run, variants: list[Serving], name: str) -> None:
    if name not in {v.name for v in variants}:
        raise DeployError(f"endpoint {run.endpoint} has no variant {name} (it has: "
                          f"{' '.join(v.name for v in variants)})")


def _move_traffic(run: Run, weights: dict[str, float], failure: str) -> None:
    run.aws.change("sagemaker", "UpdateEndpointWeightsAndCapacities", EndpointName=run.endpoint,
                   DesiredWeightsAndCapacities=[{"VariantName": n, "DesiredWeight": w} for n, w in weights.items()])
    if run.dry_run:
        dry_run_line(f"wait until {run.endpoint} is InService")
        return
    try:
        wait_for_endpoint(run)
    except NotInService:
        raise DeployError(failure) from None


def cmd_shift(run: Run, *pairs: str) -> None:
    """Set relative weights (variants not named keep theirs) and wait for InService."""
    _, current = serving_variants(run)
    weights: dict[str, float] = {}
    for pair in pairs:
        name, _, raw = pair.partition(":")
        weights[name] = weight(raw, f"the weight in '{pair}' must be a number >= 0")
        _known(run, current, name)
    planned = [Serving(v.name, weights.get(v.name, v.weight), v.instances) for v in current]
    if sum(v.weight for v in planned) <= 0:
        raise DeployError("these weights send no traffic anywhere: give at least one variant a weight above 0")
    _move_traffic(run, weights, f"the weight change of {run.endpoint} did not reach InService")
    if run.dry_run:
        info(f"traffic would be: {traffic_split(planned)}")
        return
    info(f"traffic now: {traffic_split(serving_variants(run)[1])}")


def cmd_promote(run: Run, winner: str) -> None:
    """End the test in the order that never leaves traffic on a variant being removed nor autoscaling
    on one that is gone: 1. all traffic to the winner, wait; 2. the others' scaling off (the winner
    keeps its own); 3. a config of the winner alone (its model, type and AMI as they are); 4. the
    update keeping its instance count, wait. A failure after 1 puts the others' scaling back (the
    traffic stays on the winner) and removes the config it made."""
    _, current = serving_variants(run)
    _known(run, current, winner)
    losers = [v.name for v in current if v.name != winner]
    if not losers:
        raise DeployError(f"{winner} is already the only variant of {run.endpoint}: nothing to promote")
    if any(v.name == winner and v.instances is not None and v.instances < 1 for v in current):
        raise DeployError(f"variant {winner} has no instances: it cannot take the traffic")
    info(f"promoting {winner}: all traffic to it first")
    _move_traffic(run, {winner: 1.0, **{loser: 0.0 for loser in losers}},
                  f"the weight change of {run.endpoint} did not reach InService; nothing was removed")
    old_config = _current_config(run)
    with scaling_suspended(run, only={resource_id(run.endpoint, n) for n in losers}, delete_alarm=False) as resumption:
        new_config = _winner_config(run, old_config, winner)
        _update_to(run, new_config, winner)
        resumption.after = Scaling()  # the others are gone, and so is their scaling
    if run.dry_run:
        return
    run.state.set("CONFIG", new_config)
    info(f"promoted {winner}: it serves all traffic of {run.endpoint}; removed: {' '.join(losers)} (their models stay "
         f"until 'delete'). Deploy the winner next time with its settings as the plain ones (VARIANT_NAME={winner}, "
         "MODEL_DIR, ...)")


def _current_config(run: Run) -> str:
    described = run.aws.describe_endpoint(run.endpoint)
    return str((described or {}).get("EndpointConfigName", ""))


def _winner_config(run: Run, old_config: str, winner: str) -> str:
    """A new endpoint config with the winner's ProductionVariant of ``old_config`` alone, at weight 1."""
    try:
        old = run.aws.client("sagemaker").describe_endpoint_config(EndpointConfigName=old_config)
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"cannot read variant {winner} from endpoint config {old_config}: {aws_error(exc)}") from None
    variant: dict[str, Any] = next(v for v in old["ProductionVariants"] if v["VariantName"] == winner)
    name = f"{run.settings.model_name}-config-{unique_suffix(str(int(time.time())))}"
    run.aws.change("sagemaker", "CreateEndpointConfig", EndpointConfigName=name,
                   ProductionVariants=[{**variant, "InitialVariantWeight": 1.0}], Tags=run.tags())
    return name


def _update_to(run: Run, new_config: str, winner: str) -> None:
    try:
        run.aws.change("sagemaker", "UpdateEndpoint", EndpointName=run.endpoint, EndpointConfigName=new_config,
                       RetainAllVariantProperties=True)
    except (BotoCoreError, ClientError) as exc:
        run.aws.change("sagemaker", "DeleteEndpointConfig", EndpointConfigName=new_config)
        raise DeployError(f"cannot update {run.endpoint} to {new_config} (only {winner}): {aws_error(exc)}; the "
                          "config was deleted, all traffic stays on the winner") from None
    if run.dry_run:
        dry_run_line(f"wait until {run.endpoint} is InService")
        return
    try:
        wait_for_endpoint(run, new_config)
    except NotInService:
        raise DeployError(f"the update of {run.endpoint} to {new_config} (only {winner}) did not reach InService: all "
                          f"traffic stays on {winner}, the other variants' scaling is registered again") from None
