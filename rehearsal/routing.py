"""How SageMaker picks the production variant of an invocation, as the rehearsal's data plane does it.

- ``TargetVariant`` given: that variant, whatever its weight (AWS: "this parameter overrides
  the default behavior for the endpoint, which is to distribute the invocation traffic based
  on the variant weights"); a name the endpoint does not have is a ``ValidationError``.
- A stateful session's id: the variant whose container opened the session (AWS: "for any
  subsequent request where you specify that session ID, SageMaker AI routes the request to the
  same instance that supports the session").
- Otherwise a random pick in proportion to the variants' current weights. The generator is
  seeded (``--seed``), so a rehearsal's sequence of picks is the same on every run.

Instances: a variant with several instances (containers) gets each invocation outside a session
on a seeded random one of them (``choose_instance``); a session stays on the instance that opened it.

``image_id`` follow-ups are not routed: an ``image_id`` is our container's cache key, unknown
to SageMaker, so a follow-up without ``TargetVariant`` may reach the other variant, which
answers 404 ``unknown_image_id``.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

#: Sessions remembered (oldest forgotten first); SageMaker's own session table is not documented.
MAX_REMEMBERED_SESSIONS = 10_000
NEW_SESSION = "NEW_SESSION"


@dataclass(frozen=True)
class Variant:
    """A production variant as DescribeEndpoint reports it: name and current weight (SageMaker's
    default weight is 1.0)."""

    name: str
    weight: float = 1.0


class RoutingError(Exception):
    """The invocation cannot be routed; ``message`` is what SageMaker's ``ValidationError`` says."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class VariantRouter:
    """Seeded, thread-safe variant choice with sticky sessions (see the module docstring)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._sessions: OrderedDict[str, tuple[str, int]] = OrderedDict()  # session -> (variant, instance)
        self._lock = threading.Lock()

    def choose(self, endpoint: str, variants: Sequence[Variant], target: str | None = None,
               session_id: str | None = None) -> str:
        """The variant name that serves this invocation; ``RoutingError`` when none can."""
        names = [variant.name for variant in variants]
        if target:
            if target not in names:
                raise RoutingError(f"Invalid target variant: the endpoint {endpoint} has no production variant named "
                                   f"'{target}' (its variants: {', '.join(names) or 'none'})")
            return target
        with self._lock:
            if session_id and session_id != NEW_SESSION:
                sticky = self._sessions.get(session_id)
                if sticky is not None and sticky[0] in names:
                    self._sessions.move_to_end(session_id)
                    return sticky[0]
            weighted = [variant for variant in variants if variant.weight > 0]
            total = sum(variant.weight for variant in weighted)
            if not weighted:
                raise RoutingError(f"No production variant of endpoint {endpoint} has a positive weight: "
                                   "send TargetVariant, or shift traffic to a variant")
            point = self._random.random() * total
            for variant in weighted:
                point -= variant.weight
                if point < 0:
                    return variant.name
            return weighted[-1].name

    def choose_instance(self, variant: str, instances: int, session_id: str | None = None) -> int:
        """The index (0..instances-1) of the variant's instance that serves this invocation."""
        with self._lock:
            sticky = self._sessions.get(session_id) if session_id and session_id != NEW_SESSION else None
            if sticky is not None and sticky[0] == variant and sticky[1] < instances:
                return sticky[1]
            return self._random.randrange(instances) if instances > 1 else 0

    def session_opened(self, session_id: str, variant: str, instance: int = 0) -> None:
        """Remember which variant and instance hold ``session_id`` (``X-Amzn-SageMaker-New-Session-Id``)."""
        with self._lock:
            self._sessions[session_id] = (variant, instance)
            self._sessions.move_to_end(session_id)
            while len(self._sessions) > MAX_REMEMBERED_SESSIONS:
                self._sessions.popitem(last=False)

    def session_closed(self, session_id: str) -> None:
        """Forget ``session_id`` (``X-Amzn-SageMaker-Closed-Session-Id``)."""
        with self._lock:
            self._sessions.pop(session_id, None)
