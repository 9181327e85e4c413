"""One run of the tool: its settings, AWS clients and state, shared by the commands."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from deploy.aws import Aws
from deploy.settings import TAG_KEY, Settings
from deploy.state import State

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    settings: Settings
    aws: Aws
    state: State
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    built_images: dict[str, str] = field(default_factory=dict)  # image flavour -> URI pushed by this run
    autoscale_done: bool = False  # the update registered autoscaling again: `autoscale` need not

    @classmethod
    def create(cls, settings: Settings, aws: Aws) -> Run:
        state = State(Path(settings.state_dir) / f"{settings.endpoint_name}.state", aws.dry_run)
        return cls(settings, aws, state)

    @property
    def dry_run(self) -> bool:
        return self.aws.dry_run

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint_name

    def tags(self) -> list[dict[str, str]]:
        """The tag that marks what this tool made for the endpoint (``delete`` removes those)."""
        return [{"Key": TAG_KEY, "Value": self.endpoint}]
