"""Small HyperNode builders for tests."""

from __future__ import annotations

from volcano_topology.api import HyperNode, HyperNodeSpec, Member, MemberSelector, ObjectMeta, RegexMatch


def leaf(name: str, *nodes: str, tier: int = 1) -> HyperNode:
    return HyperNode(
        metadata=ObjectMeta(name=name), spec=HyperNodeSpec(tier=tier, members=[Member.node(n) for n in nodes])
    )


def parent(name: str, *children: str, tier: int = 2) -> HyperNode:
    members = [Member.hypernode(c) for c in children]
    return HyperNode(metadata=ObjectMeta(name=name), spec=HyperNodeSpec(tier=tier, members=members))


def regex_parent(name: str, pattern: str, tier: int = 2) -> HyperNode:
    member = Member(type="HyperNode", selector=MemberSelector(regex_match=RegexMatch(pattern=pattern)))
    return HyperNode(metadata=ObjectMeta(name=name), spec=HyperNodeSpec(tier=tier, members=[member]))


def by_name(*hypernodes: HyperNode) -> dict[str, HyperNode]:
    return {h.name: h for h in hypernodes}
