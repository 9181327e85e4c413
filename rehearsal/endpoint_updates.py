"""SageMaker's in-place endpoint changes that moto lacks or gets wrong, as overlays on moto's answers.

- ``UpdateEndpoint`` (moto answers HTTP 500), with SageMaker's rules: the endpoint must be
  ``InService``; the new config must exist; an update that changes the instance type of a
  variant registered with Application Auto Scaling fails (AWS: "deregister the variant as a
  scalable target" first); ``RetainAllVariantProperties`` keeps each variant's current
  instance count and weight unless ``ExcludeRetainedVariantProperties`` names them,
  otherwise the new config's initial values apply.
- ``UpdateEndpointWeightsAndCapacities`` (moto's sets every unnamed property to null: a
  weight-only call wiped the instance count): the endpoint must be ``InService``; every
  variant named must exist, once; the given weights and instance counts replace the current
  ones, the others stay.

After either, the endpoint answers ``Updating`` to the next ``updating_polls``
``DescribeEndpoint`` calls and ``InService`` after, with the new config and variants. An
``UpdateEndpoint`` given a ``deployment_failure`` (the control plane's fault injection: say, the
new container never passed ``/ping``) is accepted, answers ``Updating`` as long, then comes back
as SageMaker leaves a failed update: ``InService`` on the previous config and variants, with the
reason as ``FailureReason`` (AWS: "the status is InService but update operation fails"). The next
update clears it.
``DescribeEndpoint`` always reports a variant's weight (SageMaker's default is 1.0; moto
leaves it out when the config did not set one).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from starlette.responses import Response

from rehearsal.aws_json import aws_answer, aws_error


@dataclass
class Overlay:
    """An endpoint's state after an update, laid over moto's answer."""

    config_name: str
    variants: list[dict[str, Any]]
    updating_polls: int
    failure_reason: str | None = None


def _with_default_weight(variant: dict[str, Any]) -> dict[str, Any]:
    weight = variant.get("CurrentWeight")
    weight = 1.0 if weight is None else weight
    desired = variant.get("DesiredWeight")
    return {**variant, "CurrentWeight": weight, "DesiredWeight": weight if desired is None else desired}


class EndpointOverlays:
    """The updated endpoints' states, guarded by one lock."""

    def __init__(self, updating_polls: int = 2) -> None:
        self.updating_polls = updating_polls
        self._overlays: dict[str, Overlay] = {}
        self._lock = threading.Lock()

    def describe(self, name: str, content: bytes) -> bytes:
        """moto's ``DescribeEndpoint`` answer with the overlay laid over it (one poll used up)."""
        described = json.loads(content)
        with self._lock:
            overlay = self._overlays.get(name)
            if overlay is not None:
                described["EndpointConfigName"] = overlay.config_name
                described["ProductionVariants"] = [dict(v) for v in overlay.variants]
                described["EndpointStatus"] = "Updating" if overlay.updating_polls > 0 else "InService"
                described.pop("FailureReason", None)
                if overlay.failure_reason is not None and overlay.updating_polls <= 0:
                    described["FailureReason"] = overlay.failure_reason
                overlay.updating_polls -= 1
        described["ProductionVariants"] = [_with_default_weight(v) for v in described.get("ProductionVariants", [])]
        return json.dumps(described, default=str).encode()

    def forget(self, name: str) -> None:
        """The endpoint was deleted."""
        with self._lock:
            self._overlays.pop(name, None)

    def _current(self, name: str, described: dict[str, Any]) -> tuple[str, list[dict[str, Any]], bool]:
        """(config name, variants, updating) of an endpoint as the overlay or moto sees it; call under the lock."""
        overlay = self._overlays.get(name)
        if overlay is not None:
            return overlay.config_name, [dict(v) for v in overlay.variants], overlay.updating_polls > 0
        variants = [_with_default_weight(v) for v in described["ProductionVariants"]]
        return described["EndpointConfigName"], variants, described["EndpointStatus"] != "InService"

    def update_endpoint(self, document: dict[str, Any], sagemaker: Any, scaling: Any,
                        deployment_failure: str | None = None) -> Response:
        """SageMaker's UpdateEndpoint, as far as a rehearsal can tell (see the module docstring);
        ``deployment_failure``: the reason this update's deployment fails and rolls back."""
        name, config_name = document.get("EndpointName", ""), document.get("EndpointConfigName", "")
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
            new_config = sagemaker.describe_endpoint_config(EndpointConfigName=config_name)
        except ClientError as exc:
            return aws_error(400, "ValidationException", exc.response["Error"]["Message"])
        with self._lock:
            old_config_name, current_variants, updating = self._current(name, described)
            if updating:
                return aws_error(400, "ValidationException", f'Cannot update in-progress endpoint "{described["EndpointArn"]}".')
        current = {v["VariantName"]: v for v in current_variants}
        old_types = {v["VariantName"]: v.get("InstanceType") for v in
                     sagemaker.describe_endpoint_config(EndpointConfigName=old_config_name)["ProductionVariants"]}
        for variant in new_config["ProductionVariants"]:
            variant_name = variant["VariantName"]
            resource = f"endpoint/{name}/variant/{variant_name}"
            registered = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])
            if registered["ScalableTargets"] and old_types.get(variant_name) not in (None, variant.get("InstanceType")):
                return aws_error(400, "ValidationException",
                                 f"The variant {variant_name} of endpoint {name} is registered with Application Auto "
                                 f"Scaling ({resource}) and the update changes its instance type from "
                                 f"{old_types[variant_name]} to {variant.get('InstanceType')}: deregister the scalable "
                                 "target first, then register it again after the update.")
        retain = bool(document.get("RetainAllVariantProperties"))
        excluded = {p.get("VariantPropertyType") for p in document.get("ExcludeRetainedVariantProperties", [])}
        variants = []
        for variant in new_config["ProductionVariants"]:
            old = current.get(variant["VariantName"], {}) if retain else {}
            count = old.get("DesiredInstanceCount") if "DesiredInstanceCount" not in excluded else None
            weight = old.get("DesiredWeight") if "DesiredWeight" not in excluded else None
            count = count if count is not None else variant.get("InitialInstanceCount", 0)
            weight = weight if weight is not None else variant.get("InitialVariantWeight", 1.0)
            variants.append({"VariantName": variant["VariantName"], "CurrentInstanceCount": count,
                             "DesiredInstanceCount": count, "CurrentWeight": weight, "DesiredWeight": weight})
        with self._lock:
            if deployment_failure is None:
                self._overlays[name] = Overlay(config_name, variants, self.updating_polls)
            else:
                self._overlays[name] = Overlay(old_config_name, current_variants, self.updating_polls, deployment_failure)
        return aws_answer({"EndpointArn": described["EndpointArn"]})

    def update_weights(self, document: dict[str, Any], sagemaker: Any) -> Response:
        """SageMaker's UpdateEndpointWeightsAndCapacities (see the module docstring)."""
        name = document.get("EndpointName", "")
        try:
            described = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            return aws_error(400, "ValidationException", exc.response["Error"]["Message"])
        changes = document.get("DesiredWeightsAndCapacities") or []
        with self._lock:
            config_name, variants, updating = self._current(name, described)
            if updating:
                return aws_error(400, "ValidationException", f'Cannot update in-progress endpoint "{described["EndpointArn"]}".')
            by_name = {v["VariantName"]: v for v in variants}
            seen: set[str] = set()
            for change in changes:
                variant_name = change.get("VariantName", "")
                if variant_name in seen:
                    return aws_error(400, "ValidationException",
                                     f'The variant name "{variant_name}" was non-unique within the request.')
                seen.add(variant_name)
                if variant_name not in by_name:
                    return aws_error(400, "ValidationException", f'The variant name(s) "{variant_name}" is/are not '
                                     f'present within endpoint configuration "{config_name}".')
                if change.get("DesiredWeight") is not None and float(change["DesiredWeight"]) < 0:
                    return aws_error(400, "ValidationException", f"The weight of variant {variant_name} must be >= 0.")
            for change in changes:
                variant = by_name[change["VariantName"]]
                if change.get("DesiredWeight") is not None:
                    variant["CurrentWeight"] = variant["DesiredWeight"] = float(change["DesiredWeight"])
                if change.get("DesiredInstanceCount") is not None:
                    variant["CurrentInstanceCount"] = variant["DesiredInstanceCount"] = int(change["DesiredInstanceCount"])
            self._overlays[name] = Overlay(config_name, variants, self.updating_polls)
        return aws_answer({"EndpointArn": described["EndpointArn"]})
