"""Pydantic models of Volcano's ``HyperNode`` (``topology.volcano.sh/v1alpha1``).

The models enforce exactly what the API server enforces for the CRD in ``crds/``
(OpenAPI constraints, both CEL rules, object-metadata rules). Volcano's admission
rules live in :mod:`volcano_topology.admission`; the two are kept apart because the
API server only enforces the first set, and a parity test holds the models to it.

Wire format is camelCase; ``to_dict()`` round-trips what the API server returns,
including metadata fields these models do not name (``managedFields`` and so on).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from volcano_topology import kubenames

GROUP = "topology.volcano.sh"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "HyperNode"
PLURAL = "hypernodes"

INT64_MAX = 2**63 - 1
ANNOTATIONS_MAX_BYTES = 256 * 1024
CONDITION_REASON_PATTERN = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
CONDITION_TYPE_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
)
CEL_ONE_SELECTOR_REQUIRED = "Either ExactMatch or RegexMatch or LabelMatch must be specified"
CEL_AT_MOST_ONE_SELECTOR = "Only one of ExactMatch, RegexMatch, or LabelMatch can be specified"

MemberType = Literal["Node", "HyperNode"]


class WireModel(BaseModel):
    """camelCase on the wire, unknown fields refused (as ``fieldValidation=Strict`` does)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict the API server would store."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _format_error(rule: str, problems: list[str]) -> PydanticCustomError:
    return PydanticCustomError("k8s_format", "{detail}", {"rule": rule, "detail": "; ".join(problems)})


class ObjectMeta(BaseModel):
    """The parts of ``metadata`` the operator reads or writes; every other field is kept as-is."""

    model_config = ConfigDict(**{**WireModel.model_config, "extra": "allow"})

    name: StrictStr | None = None
    generate_name: StrictStr | None = None
    labels: dict[StrictStr, StrictStr] | None = None
    annotations: dict[StrictStr, StrictStr] | None = None
    resource_version: StrictStr | None = None
    generation: StrictInt | None = None
    uid: StrictStr | None = None

    @field_validator("name")
    @classmethod
    def _name_is_dns_subdomain(cls, value: str | None) -> str | None:
        if value is not None and (problems := kubenames.dns1123_subdomain_problems(value)):
            raise _format_error(
                "metadata.name is a DNS-1123 subdomain",
                [f"{value!r} is not a valid HyperNode name: {p}" for p in problems],
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels_are_valid(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, label in (value or {}).items():
            if problems := kubenames.qualified_name_problems(key):
                raise _format_error("label keys are qualified names", [f"key {key!r}: {p}" for p in problems])
            if problems := kubenames.label_value_problems(label):
                raise _format_error("label values are valid label values", [f"{key}={label!r}: {p}" for p in problems])
        return value

    @field_validator("annotations")
    @classmethod
    def _annotations_are_valid(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            # The API server lower-cases annotation keys before checking them, unlike label keys.
            if problems := kubenames.qualified_name_problems(key.lower()):
                raise _format_error("annotation keys are qualified names", [f"key {key!r}: {p}" for p in problems])
        total = sum(len(k.encode()) + len(v.encode()) for k, v in (value or {}).items())
        if total > ANNOTATIONS_MAX_BYTES:
            raise _format_error("annotations total size", [f"may not be more than {ANNOTATIONS_MAX_BYTES} bytes"])
        return value

    @model_validator(mode="after")
    def _name_or_generate_name(self) -> ObjectMeta:
        if self.name is None and self.generate_name is None:
            raise PydanticCustomError(
                "k8s_required", "name or generateName is required", {"rule": "metadata.name is required"}
            )
        return self


class ExactMatch(WireModel):
    name: Annotated[
        StrictStr,
        Field(min_length=1, max_length=kubenames.DNS1123_SUBDOMAIN_MAX, pattern=kubenames.DNS1123_SUBDOMAIN_PATTERN),
    ]

    @field_validator("name", mode="before")
    @classmethod
    def _name_in_words(cls, value: Any) -> Any:
        """The CRD's pattern, refused with a message naming the value and the rule instead of quoting the regex.

        The error keeps pydantic's ``string_pattern_mismatch`` type and ``pattern`` context, so the
        rule reported for it is unchanged; other values (empty, too long, not a string) are left
        to the field's own constraints.
        """
        if (
            isinstance(value, str)
            and 0 < len(value) <= kubenames.DNS1123_SUBDOMAIN_MAX
            and (problems := kubenames.dns1123_subdomain_problems(value))
        ):
            raise PydanticCustomError(
                "string_pattern_mismatch",
                "{value} is not a valid member name (a Node or HyperNode name): {detail}",
                {"pattern": kubenames.DNS1123_SUBDOMAIN_PATTERN, "value": repr(value), "detail": problems[0]},
            )
        return value


class RegexMatch(WireModel):
    pattern: Annotated[StrictStr, Field(min_length=1)]


class LabelSelectorRequirement(WireModel):
    key: StrictStr
    operator: StrictStr
    values: list[StrictStr] | None = None


class LabelSelector(WireModel):
    match_labels: dict[StrictStr, StrictStr] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


class MemberSelector(WireModel):
    exact_match: ExactMatch | None = None
    regex_match: RegexMatch | None = None
    label_match: LabelSelector | None = None

    @model_validator(mode="after")
    def _exactly_one_selector(self) -> MemberSelector:
        count = sum(s is not None for s in (self.exact_match, self.regex_match, self.label_match))
        if count == 0:
            raise PydanticCustomError("crd_cel", CEL_ONE_SELECTOR_REQUIRED, {"rule": "CEL: one selector required"})
        if count > 1:
            raise PydanticCustomError("crd_cel", CEL_AT_MOST_ONE_SELECTOR, {"rule": "CEL: at most one selector"})
        return self


class Member(WireModel):
    type: MemberType
    selector: MemberSelector | None = None

    @classmethod
    def node(cls, name: str) -> Member:
        return cls(type="Node", selector=MemberSelector(exact_match=ExactMatch(name=name)))

    @classmethod
    def hypernode(cls, name: str) -> Member:
        return cls(type="HyperNode", selector=MemberSelector(exact_match=ExactMatch(name=name)))


class HyperNodeSpec(WireModel):
    tier: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)]
    tier_name: Annotated[StrictStr, Field(max_length=253)] | None = None
    members: Annotated[list[Member], Field(min_length=1)] | None = None


class Condition(WireModel):
    type: Annotated[StrictStr, Field(max_length=316, pattern=CONDITION_TYPE_PATTERN)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[StrictStr, Field(min_length=1, max_length=1024, pattern=CONDITION_REASON_PATTERN)]
    message: Annotated[StrictStr, Field(max_length=32768)]
    last_transition_time: StrictStr
    observed_generation: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] | None = None

    @field_validator("last_transition_time")
    @classmethod
    def _is_date_time(cls, value: str) -> str:
        if problems := kubenames.date_time_problems(value):
            raise _format_error("format date-time", problems)
        return value


class HyperNodeStatus(WireModel):
    conditions: list[Condition] | None = None
    node_count: Annotated[StrictInt, Field(ge=0, le=INT64_MAX)] | None = None


class HyperNode(WireModel):
    api_version: Literal["topology.volcano.sh/v1alpha1"] = "topology.volcano.sh/v1alpha1"
    kind: Literal["HyperNode"] = "HyperNode"
    metadata: ObjectMeta
    spec: HyperNodeSpec | None = None
    status: HyperNodeStatus | None = None

    @property
    def name(self) -> str:
        if self.metadata.name is None:
            raise ValueError("this HyperNode has no metadata.name")
        return self.metadata.name

    @property
    def members(self) -> list[Member]:
        return list(self.spec.members or []) if self.spec else []
