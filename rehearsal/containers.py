"""The rehearsal's containers, as SageMaker would run them: one real ``inference.py serve`` process
per instance of each production variant of an endpoint.

``--serve-model-dir DIR --endpoint-name NAME`` on the data plane reads the endpoint from the control
plane (``AWS_ENDPOINT_URL``): each variant's ``CurrentInstanceCount`` (what the deploy asked for, or
what ``UpdateEndpointWeightsAndCapacities`` / autoscaling set) and its model's container
``Environment`` (what ``CreateModel`` was given: ``SAM_SHARED_CACHE_URL``, cache budgets, ...). It
starts that many servers on free 127.0.0.1 ports with that environment, waits for each ``/ping``,
and stops them all (SIGTERM, as SageMaker does) when the data plane exits. The count is read once,
at start: restart the data plane to follow a scale-out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serving.local_endpoint import LocalEndpoint, start_local_endpoint

log = logging.getLogger(__name__)

#: The most containers one variant gets in a rehearsal (each loads the model: memory).
MAX_INSTANCES_PER_VARIANT = 8


@dataclass(frozen=True)
class VariantPlan:
    """What to run for one production variant: how many containers, with which environment."""

    name: str
    instances: int
    environment: dict[str, str]


def _model_environment(sagemaker: Any, model_name: str) -> dict[str, str]:
    """The container ``Environment`` ``CreateModel`` was given (the first container of a pipeline)."""
    model = sagemaker.describe_model(ModelName=model_name)
    container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
    return {str(key): str(value) for key, value in (container.get("Environment") or {}).items()}


def plan_variants(sagemaker: Any, endpoint_name: str) -> list[VariantPlan]:
    """Each production variant of ``endpoint_name``: its current instance count (at least 1) and its
    model's container environment. Raises ``ValueError`` for a count over the rehearsal's bound."""
    endpoint = sagemaker.describe_endpoint(EndpointName=endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    models = {variant["VariantName"]: variant["ModelName"] for variant in config["ProductionVariants"]}
    plans = []
    for variant in endpoint.get("ProductionVariants") or config["ProductionVariants"]:
        name = variant["VariantName"]
        count = int(variant.get("CurrentInstanceCount") or variant.get("InitialInstanceCount") or 1)
        if count > MAX_INSTANCES_PER_VARIANT:
            raise ValueError(f"variant {name} has {count} instances; the rehearsal runs at most "
                             f"{MAX_INSTANCES_PER_VARIANT} containers per variant")
        plans.append(VariantPlan(name, max(count, 1), _model_environment(sagemaker, models[name])))
    return plans


@contextlib.contextmanager
def running_containers(plans: list[VariantPlan], model_dir: Path, log_dir: Path,
                       extra_env: Mapping[str, str] | None = None, deadline_s: float = 300.0
                       ) -> Iterator[dict[str, list[str]]]:
    """Start every planned container (variant name -> its instances' URLs) and stop them all on exit,
    also when one fails to start. ``extra_env`` overrides the models' environments (local paths)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[LocalEndpoint] = []
    try:
        urls: dict[str, list[str]] = {}
        for plan in plans:
            for index in range(plan.instances):
                env = {**plan.environment, "SAM_VARIANT_NAME": plan.name, **(extra_env or {})}
                endpoint = start_local_endpoint(model_dir, log_dir / f"{plan.name}-{index}.log", env,
                                                wait_ready=False)
                started.append(endpoint)
                urls.setdefault(plan.name, []).append(endpoint.url)
        for endpoint in started:
            endpoint.wait_ready(deadline_s)
        log.info("containers started: %s", urls)
        yield urls
    finally:
        for endpoint in started:
            with contextlib.suppress(TimeoutError):
                endpoint.stop()
