"""The model's verdict equals the real API server's, case by case.

Without Volcano's admission policy (objects labelled to skip it) the server judges the
CRD alone; with it, the server judges CRD + policy. Volcano's Go webhook (RE2) is not
installed here, so webhook-only rules are held to the model tests alone.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import SKIP_ADMISSION_LABEL
from tests.parity_cases import CASES, Case, hn
from tests.unit.test_model_rules import layer_verdicts
from volcano_topology.api import GROUP, PLURAL, VERSION
from volcano_topology.validation import check_document

STATUS_BASE = "parity-status"


def rejected(exc: client.ApiException) -> tuple[bool, str]:
    if exc.status not in (400, 422):
        raise AssertionError(f"expected a validation rejection, got HTTP {exc.status}: {exc.body}") from exc
    return False, str(exc.body)


def server_accepts_create(api: client.ApiClient, document: dict[str, Any]) -> tuple[bool, str]:
    try:
        client.CustomObjectsApi(api).create_cluster_custom_object(
            GROUP, VERSION, PLURAL, document, dry_run="All", field_validation="Strict"
        )
    except client.ApiException as exc:
        return rejected(exc)
    return True, ""


def server_accepts_status(api: client.ApiClient, status: dict[str, Any]) -> tuple[bool, str]:
    try:
        client.CustomObjectsApi(api).patch_cluster_custom_object_status(
            GROUP,
            VERSION,
            PLURAL,
            STATUS_BASE,
            {"status": status},
            dry_run="All",
            field_validation="Strict",
            _content_type="application/merge-patch+json",
        )
    except client.ApiException as exc:
        return rejected(exc)
    return True, ""


@pytest.fixture(scope="module")
def status_base(hypernode_api: client.ApiClient) -> client.ApiClient:
    client.CustomObjectsApi(hypernode_api).create_cluster_custom_object(GROUP, VERSION, PLURAL, hn(STATUS_BASE))
    return hypernode_api


def skipping_admission(document: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(document)
    metadata = out.setdefault("metadata", {})
    metadata["labels"] = {**(metadata.get("labels") or {}), SKIP_ADMISSION_LABEL: "true"}
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_model_agrees_with_api_server(case: Case, status_base: client.ApiClient) -> None:
    model_schema, model_policy, _ = layer_verdicts(check_document(case.document))
    if case.status:
        accepted, why = server_accepts_status(status_base, case.document["status"])
        assert accepted == model_schema, f"server {'accepted' if accepted else 'rejected'}: {why}"
        return
    accepted, why = server_accepts_create(status_base, skipping_admission(case.document))
    assert accepted == model_schema, f"API server alone {'accepted' if accepted else 'rejected'}: {why}"
    accepted, why = server_accepts_create(status_base, case.document)
    assert accepted == model_policy, f"with Volcano's policy the server {'accepted' if accepted else 'rejected'}: {why}"
