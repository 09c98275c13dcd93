"""The provider contract: what a vendor implements and what it gets back.

A provider is a class registered under the entry-point group
``volcano_topology.providers``; the entry-point name is the provider's name (the
``source`` in configuration). The operator constructs it with its validated
settings, awaits ``start(events, replies, ctx)`` as a task, and calls ``stop()``
after cancelling that task.

``start`` runs for as long as the provider discovers: put ``Event`` objects on
``events`` (a bounded queue: ``await events.put(...)`` waits when the writer is
behind) and read ``Reply`` objects from ``replies``, which only this provider sees.
If ``start`` raises, the provider is restarted with backoff; the others keep running.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from volcano_topology.api import HyperNode
from volcano_topology.problems import Problem

CONTRACT_VERSION = "1.1"  # 1.1: live Node view (nodes_synced, nodes_changed), needs_nodes, gauges()
ENTRY_POINT_GROUP = "volcano_topology.providers"


class EventType(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SNAPSHOT = "SNAPSHOT"


@dataclass(frozen=True)
class Event:
    """One change (CREATE/UPDATE/DELETE of one HyperNode) or the provider's whole desired set (SNAPSHOT).

    CREATE and UPDATE both mean "this object should exist exactly so": creating an
    object that exists updates it, updating a missing one creates it. DELETE of a
    missing object is already done.
    """

    type: EventType
    hypernode: HyperNode | None = None
    name: str | None = None
    hypernodes: tuple[HyperNode, ...] = ()
    # When the provider made it (wall clock): the operator reports how long after this it was applied.
    made: float = field(default_factory=time.time, compare=False, repr=False)

    @classmethod
    def create(cls, hypernode: HyperNode) -> Event:
        return cls(EventType.CREATE, hypernode=hypernode)

    @classmethod
    def update(cls, hypernode: HyperNode) -> Event:
        return cls(EventType.UPDATE, hypernode=hypernode)

    @classmethod
    def delete(cls, name: str) -> Event:
        return cls(EventType.DELETE, name=name)

    @classmethod
    def snapshot(cls, hypernodes: Iterable[HyperNode]) -> Event:
        return cls(EventType.SNAPSHOT, hypernodes=tuple(hypernodes))

    @property
    def target(self) -> str:
        """The HyperNode name this event is about (``*`` for a snapshot)."""
        if self.type is EventType.SNAPSHOT:
            return "*"
        if isinstance(self.hypernode, HyperNode):
            return self.hypernode.metadata.name or "?"
        if isinstance(self.hypernode, Mapping):  # a malformed event (a dict, not a HyperNode): still named
            metadata = self.hypernode.get("metadata")
            return str(metadata.get("name") or "?") if isinstance(metadata, Mapping) else "?"
        return str(self.name or "?")

    def __str__(self) -> str:
        if self.type is EventType.SNAPSHOT:
            try:
                return f"SNAPSHOT of {len(self.hypernodes)} HyperNodes"
            except TypeError:  # a malformed snapshot; describing it must not fail the log line that names it
                return "SNAPSHOT (malformed)"
        return f"{self.type} {self.target}"


class ApplyError(Exception):
    """Why an event (or part of a snapshot) was not applied. Subclasses are the error types."""

    reason: ClassVar[str] = "Failed"

    def __init__(
        self, message: str, *, name: str | None = None, problems: Iterable[Problem] = (), status: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.name = name
        self.problems = tuple(problems)
        self.status = status

    def __str__(self) -> str:
        where = f"HyperNode {self.name}: " if self.name else ""
        return f"{self.reason}: {where}{self.message}"


class MalformedEvent(ApplyError):
    """The queue carried something that is not a well-formed ``Event``."""

    reason = "MalformedEvent"


class InvalidHyperNode(ApplyError):
    """The object breaks a CRD or Volcano admission rule (``problems`` says which)."""

    reason = "Invalid"


class TopologyViolation(ApplyError):
    """The provider's set would break the scheduler's strict-tree assumptions."""

    reason = "TopologyViolation"


class OwnershipConflict(ApplyError):
    """An object of that name exists and is not this provider's."""

    reason = "OwnershipConflict"


class DeletionRefused(ApplyError):
    """The deletion guard refused a snapshot that would delete too much."""

    reason = "DeletionGuard"


class RequestRejected(ApplyError):
    """The API server refused the request permanently (400, 403, 422...)."""

    reason = "Rejected"


class RetriesExhausted(ApplyError):
    """Transient failures outlasted the retry budget."""

    reason = "RetriesExhausted"


@dataclass(frozen=True)
class Reply:
    """Sent on the provider's own reply queue when (part of) an event could not be applied.

    ``event`` is None only when what the provider queued was not an ``Event`` at all.
    """

    event: Event | None
    error: ApplyError
    attempts: int = 0


class ClusterView(Protocol):
    """Read-only views of the cluster a provider may use (it never gets a write-capable client)."""

    def nodes(self) -> Mapping[str, Mapping[str, str]]:
        """Node name -> labels."""
        ...

    def owned_hypernodes(self) -> Mapping[str, HyperNode]:
        """The HyperNodes this provider owns, as last observed."""
        ...

    def nodes_synced(self) -> bool:
        """True once the Node view holds the cluster's Nodes (the operator's watch delivered its first list).

        Before that ``nodes()`` is empty or incomplete: a provider must not build a topology from it.
        """
        ...

    async def nodes_changed(self, seen: int) -> int:
        """Wait until the Node view is synced and its generation is not ``seen``; return that generation.

        The generation changes whenever a Node is added, deleted or relabelled; 0 is never a
        generation, so ``nodes_changed(0)`` returns as soon as the view is synced. Changes are
        not queued: one call after many changes returns once (coalescing them is the caller's).
        Live only for providers whose class sets ``needs_nodes = True``; otherwise (and offline)
        the view is generation 1 for ever.
        """
        ...


class SecretReader(Protocol):
    async def read(self, name: str, key: str, namespace: str | None = None) -> bytes: ...


@dataclass
class ProviderContext:
    name: str
    logger: logging.Logger
    cluster: ClusterView
    secrets: SecretReader
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    interval: float | None = None  # the configured ``interval`` in seconds, if any
    # The data of ``credentials.secretRef``; kept out of repr() so a logged context never shows it.
    credentials: Mapping[str, bytes] = field(default_factory=dict, repr=False)


class Provider(abc.ABC):
    """Base class of every provider.

    ``settings_model`` (optional) is a pydantic model for the provider's ``config``
    block; the operator validates the configuration with it and reports errors by
    provider and field before the provider is constructed.
    """

    contract_version: ClassVar[str] = CONTRACT_VERSION
    settings_model: ClassVar[type[BaseModel] | None] = None
    # True: the operator watches Nodes while this provider runs, and ``ctx.cluster`` follows them live.
    needs_nodes: ClassVar[bool] = False

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings

    @abc.abstractmethod
    async def start(self, events: asyncio.Queue[Event], replies: asyncio.Queue[Reply], ctx: ProviderContext) -> None:
        """Discover and emit events until done or cancelled."""

    async def stop(self) -> None:  # noqa: B027 - optional hook with nothing to do by default
        """Release resources; called after the ``start`` task has been cancelled or has ended."""

    def post_process(self, hypernode: HyperNode) -> HyperNode:
        """Augment each HyperNode (labels, annotations) just before it is written.

        Runs in the writer, after discovery; the ownership labels are set after it, so it
        cannot take them away. The result is validated like any other object.
        """
        return hypernode

    def gauges(self) -> Mapping[str, float]:
        """Figures of the provider's own, exported as ``volcano_topology_provider_<key>{provider="<name>"}``.

        Keys are metric name parts (``[a-z_][a-z0-9_]*``, e.g. ``unmapped_hosts``); called on each
        scrape, on the event loop, so it must be quick and must not block. A key that is not a
        valid name, or a value that is not a number, is left out and logged.
        """
        return {}

    def has_post_process(self) -> bool:
        return type(self).post_process is not Provider.post_process


def contract_problem(declared: object) -> str | None:
    """Why a provider's declared contract version cannot run here, or None when it can."""
    ours_major, ours_minor = (int(x) for x in CONTRACT_VERSION.split("."))
    try:
        major, minor = (int(x) for x in str(declared).split("."))
    except ValueError:
        return f"declares contract version {declared!r}, which is not of the form MAJOR.MINOR"
    if major != ours_major or minor > ours_minor:
        return f"was built for provider contract {declared}, this operator implements {CONTRACT_VERSION}"
    return None
