"""Command name -> handler (``all`` is expanded by the CLI)."""

from __future__ import annotations

from collections.abc import Callable

from deploy.ab import cmd_promote, cmd_shift
from deploy.batch import cmd_batch
from deploy.commands import cmd_check, cmd_delete, cmd_package, cmd_status, cmd_test
from deploy.images import cmd_image
from deploy.realtime import cmd_autoscale, cmd_config, cmd_endpoint, cmd_model
from deploy.warm import cmd_batch_warm

COMMANDS: dict[str, Callable[..., None]] = {
    "check": cmd_check, "package": cmd_package, "image": cmd_image, "model": cmd_model, "config": cmd_config,
    "endpoint": cmd_endpoint, "autoscale": cmd_autoscale, "test": cmd_test, "status": cmd_status,
    "delete": cmd_delete, "shift": cmd_shift, "promote": cmd_promote, "batch": cmd_batch,
    "batch-warm": cmd_batch_warm,
}
