"""Watch HyperNodes on the real API server and check every intermediate state the scheduler could see."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch

from volcano_topology import ownership
from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode
from volcano_topology.tree import moment_problems


@dataclass
class StateWatcher:
    """Follows one source's HyperNodes through a watch; after every event, checks the strict-tree rules.

    ``states`` counts the states seen; ``violations`` holds (resourceVersion, problem) for each
    state that broke a rule. Start before the change, ``stop()`` after it.
    """

    api: client.ApiClient
    source: str
    states: int = 0
    violations: list[tuple[str, str]] = field(default_factory=list)
    current: dict[str, HyperNode] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _ready: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> StateWatcher:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.source}", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise TimeoutError("the watch did not start")
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.error is not None:
            raise self.error

    def bad_states(self) -> int:
        return len({version for version, _ in self.violations})

    def _mine(self, obj: dict[str, Any]) -> bool:
        return ownership.owner_of((obj.get("metadata") or {}).get("labels")) == self.source

    def _run(self) -> None:
        objects = client.CustomObjectsApi(self.api)
        try:
            listed = objects.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            for item in listed["items"]:
                if self._mine(item):
                    self.current[item["metadata"]["name"]] = HyperNode.model_validate(item)
            version = listed["metadata"]["resourceVersion"]
            self._ready.set()
            while not self._stop.is_set():
                stream = watch.Watch()
                for event in stream.stream(
                    objects.list_cluster_custom_object, GROUP, VERSION, PLURAL,
                    resource_version=version, timeout_seconds=1, allow_watch_bookmarks=True,
                ):  # fmt: skip
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] == "BOOKMARK":
                        continue
                    name = obj["metadata"]["name"]
                    if event["type"] == "DELETED" or not self._mine(obj):
                        self.current.pop(name, None)
                    else:
                        self.current[name] = HyperNode.model_validate(obj)
                    self.states += 1
                    self.violations.extend((version, p) for p in moment_problems(self.current))
                    if self._stop.is_set():
                        break
        except BaseException as exc:  # surfaced by stop()
            self.error = exc
            self._ready.set()
