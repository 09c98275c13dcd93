"""Where views read HyperNodes from: a file or standard input (``discover``'s output), or the live cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import ValidationError

from volcano_topology.api import GROUP, PLURAL, VERSION, HyperNode


class ViewInputError(ValueError):
    """The input holds something that is not a HyperNode list: the message says which document and why."""


Nodes = dict[str, dict[str, str]]


def parse_objects(text: str, label: str = "input") -> tuple[dict[str, HyperNode], Nodes | None]:
    """HyperNodes (and Nodes, if any) from YAML or JSON: documents, ``List``s or ``HyperNodeList``s.

    Node objects in the input (``kubectl get nodes -o yaml`` appended) make the Nodes known.
    """
    try:
        # libyaml's loader when PyYAML has it: ten times faster on a 16k-node fabric's discover output
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        documents = [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        raise ViewInputError(f"{label}: not valid YAML or JSON: {exc}") from exc
    hypernodes: dict[str, HyperNode] = {}
    nodes: Nodes | None = None
    for index, item in _items(documents):
        where = f"{label}: document {index}"
        if not isinstance(item, dict):
            raise ViewInputError(f"{where}: expected an object, found {type(item).__name__}")
        kind = item.get("kind")
        if kind == "Node":
            metadata = item.get("metadata") or {}
            nodes = nodes if nodes is not None else {}
            nodes[str(metadata.get("name"))] = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
            continue
        if kind != "HyperNode":
            raise ViewInputError(f"{where}: kind {kind!r} is not HyperNode (or Node)")
        try:
            hypernode = HyperNode.model_validate(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            path = ".".join(str(p) for p in first["loc"])
            raise ViewInputError(f"{where}: not a valid HyperNode: {path}: {first['msg']}") from exc
        if hypernode.name in hypernodes:
            raise ViewInputError(f"{where}: HyperNode {hypernode.name} appears twice")
        hypernodes[hypernode.name] = hypernode
    return hypernodes, nodes


def _items(documents: list[Any]) -> Iterator[tuple[int, Any]]:
    for index, document in enumerate(documents, start=1):
        if isinstance(document, dict) and isinstance(document.get("items"), list):
            for item in document["items"]:
                yield index, item
        else:
            yield index, document


def read_cluster(kubeconfig: str | None) -> tuple[dict[str, HyperNode], Nodes]:
    """Every HyperNode and every Node's labels, from the cluster ``kubeconfig`` names (or the default one)."""
    from kubernetes import client

    from volcano_topology import kube

    api = kube.api_client(kubeconfig)
    try:
        listed: Any = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)
        hypernodes = {}
        for item in listed["items"]:
            try:
                hypernode = HyperNode.model_validate(item)
            except ValidationError:
                continue  # an object written before today's rules: the views cannot read it either
            hypernodes[hypernode.name] = hypernode
        nodes: Nodes = {}
        token: str | None = None
        while True:  # paged: a 16k-node cluster is one large answer otherwise
            page: Any = client.CoreV1Api(api).list_node(limit=500, _continue=token, _preload_content=False)
            body = json.loads(page.data)
            for item in body.get("items") or []:
                metadata = item.get("metadata") or {}
                nodes[metadata.get("name", "")] = dict(metadata.get("labels") or {})
            token = (body.get("metadata") or {}).get("continue") or None
            if token is None:
                break
        return hypernodes, nodes
    finally:
        api.close()  # type: ignore[no-untyped-call]
