"""The chart's ValidatingAdmissionPolicy on Secrets: what it matches, for whom, and what its CEL
expressions decide on sample admissions, run by a real CEL engine (`common-expression-language`,
the one tests/unit/test_crds_cel.py runs the CRD rules with).

The labelled sample is the copy the webhook itself writes (`kuik_webhook.secrets.copy_of`), so a
label renamed in Python but not in the chart fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import cel
import pytest

from kuik_testing.objects import all_images, cism, mirror
from kuik_webhook.secrets import copy_of
from kuikcore.api import OWNER_GROUP_LABEL, OWNER_UID_LABEL, parse_resource

from .conftest import JSON, NAMESPACE, ChartRenderer, Rendered

FULLNAME = "kuik-kube-image-keeper"
POLICY = f"{FULLNAME}-secret-writes"
SA = f"system:serviceaccount:{NAMESPACE}"
WEBHOOK = f"{SA}:{FULLNAME}-webhook"
REPLICATOR = f"{SA}:{FULLNAME}-replicator"
MONITOR = f"{SA}:{FULLNAME}-monitor"

OWNER = parse_resource(
    cism(
        "mirrors",
        mirror("mirror.local:5000", "m"),
        metadata={"uid": "0b5e7e0a-uid"},
        filter=all_images(),
    )
)
SOURCE = {"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}}
COPY = copy_of(SOURCE, "apps", "kuik-creds-0123456789abcdef", OWNER)
FOREIGN: JSON = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "db-password", "namespace": "apps", "labels": {"app": "db"}},
    "data": {"password": "cw=="},
}
BARE: JSON = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "apps"}}


def _forged(**labels: str) -> JSON:
    secret = copy.deepcopy(FOREIGN)
    secret["metadata"]["labels"] = labels
    return secret


@pytest.fixture(scope="module")
def rendered(chart: ChartRenderer) -> Rendered:
    return chart.render()


@pytest.fixture(scope="module")
def policy(rendered: Rendered) -> JSON:
    return rendered.get("ValidatingAdmissionPolicy", POLICY)


def admit(
    policy: JSON, user: str, operation: str, obj: JSON | None, old: JSON | None = None
) -> bool:
    """What the API server decides for this Secret request, as far as the policy goes: match
    constraints, match conditions, variables in order, then every validation."""
    spec = policy["spec"]
    [rule] = spec["matchConstraints"]["resourceRules"]
    if operation not in rule["operations"]:
        return True
    context: dict[str, Any] = {
        "request": {"operation": operation, "userInfo": {"username": user}},
        "object": obj,
        "oldObject": old,
    }
    if not all(cel.evaluate(c["expression"], context) for c in spec["matchConditions"]):
        return True
    variables: dict[str, Any] = {}
    for variable in spec["variables"]:
        variables[variable["name"]] = cel.evaluate(
            variable["expression"], {**context, "variables": variables}
        )
    context["variables"] = variables
    for validation in spec["validations"]:
        if cel.evaluate(validation["expression"], context) is not True:
            message = cel.evaluate(validation["messageExpression"], context)
            assert "kuik pull-secret copies" in message
            return False
    return True


def test_policy_judges_secret_writes_of_kuik_service_accounts_only(rendered: Rendered) -> None:
    policy = rendered.get("ValidatingAdmissionPolicy", POLICY)
    spec = policy["spec"]
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE", "DELETE"],
            "resources": ["secrets"],
        }
    ]
    binding = rendered.get("ValidatingAdmissionPolicyBinding", POLICY)
    assert binding["spec"] == {"policyName": POLICY, "validationActions": ["Deny"]}
    # The user names are the ServiceAccounts the Deployments really run as.
    for service, user in (("webhook", WEBHOOK), ("replicator", REPLICATOR)):
        pod = rendered.component("Deployment", service)["spec"]["template"]["spec"]
        assert user == f"{SA}:{pod['serviceAccountName']}"
        assert f"'{user}'" in spec["matchConditions"][0]["expression"]
    assert MONITOR not in spec["matchConditions"][0]["expression"]


def test_labels_checked_are_the_ones_the_webhook_writes(policy: JSON) -> None:
    text = str(policy["spec"]["variables"])
    assert OWNER_UID_LABEL in text
    assert OWNER_GROUP_LABEL in text
    assert COPY["metadata"]["labels"][OWNER_GROUP_LABEL] == "kuik.enix.io"


@pytest.mark.parametrize(
    ("user", "operation", "obj", "old", "allowed"),
    [
        # the webhook: creates and updates kuik's copies, nothing else
        (WEBHOOK, "CREATE", COPY, None, True),
        (WEBHOOK, "UPDATE", COPY, COPY, True),
        (WEBHOOK, "CREATE", FOREIGN, None, False),
        (WEBHOOK, "CREATE", BARE, None, False),
        (WEBHOOK, "UPDATE", COPY, FOREIGN, False),  # taking over someone's Secret
        (WEBHOOK, "UPDATE", FOREIGN, COPY, False),  # stripping the labels
        (WEBHOOK, "CREATE", _forged(**{OWNER_UID_LABEL: "u"}), None, False),
        (WEBHOOK, "CREATE", _forged(**{OWNER_GROUP_LABEL: "kuik.enix.io"}), None, False),
        (WEBHOOK, "CREATE", _forged(**{OWNER_GROUP_LABEL: "x", OWNER_UID_LABEL: "u"}), None, False),
        (WEBHOOK, "DELETE", None, COPY, False),
        # the replicator: deletes kuik's copies, nothing else
        (REPLICATOR, "DELETE", None, COPY, True),
        (REPLICATOR, "DELETE", None, FOREIGN, False),
        (REPLICATOR, "DELETE", None, BARE, False),
        (REPLICATOR, "CREATE", COPY, None, False),
        (REPLICATOR, "UPDATE", COPY, COPY, False),
        # everybody else is left to RBAC
        (MONITOR, "CREATE", FOREIGN, None, True),
        ("system:admin", "DELETE", None, FOREIGN, True),
        (f"{SA}:other", "UPDATE", FOREIGN, FOREIGN, True),
    ],
)
def test_policy_decisions(
    policy: JSON, user: str, operation: str, obj: JSON | None, old: JSON | None, allowed: bool
) -> None:
    assert admit(policy, user, operation, obj, old) is allowed


def test_one_service_account_for_both_keeps_both_rights(chart: ChartRenderer) -> None:
    shared = {"serviceAccount": {"create": False, "name": "kuik"}}
    rendered = chart.render({"webhook": shared, "replicator": shared})
    policy = rendered.get("ValidatingAdmissionPolicy", POLICY)
    user = f"{SA}:kuik"
    assert admit(policy, user, "CREATE", COPY)
    assert admit(policy, user, "DELETE", None, COPY)
    assert not admit(policy, user, "DELETE", None, FOREIGN)


def test_policy_follows_the_parts_switched_on(chart: ChartRenderer) -> None:
    rendered = chart.render({"webhook": {"enabled": False}})
    policy = rendered.get("ValidatingAdmissionPolicy", POLICY)
    assert WEBHOOK not in policy["spec"]["matchConditions"][0]["expression"]
    assert admit(policy, REPLICATOR, "DELETE", None, COPY)
    assert not admit(policy, REPLICATOR, "DELETE", None, FOREIGN)
    both_off = chart.render({"webhook": {"enabled": False}, "replicator": {"enabled": False}})
    assert both_off.of_kind("ValidatingAdmissionPolicy") == []


def test_policy_can_be_switched_off_for_clusters_before_1_30(chart: ChartRenderer) -> None:
    rendered = chart.render({"validatingAdmissionPolicy": {"enabled": False}})
    assert rendered.of_kind("ValidatingAdmissionPolicy") == []
    assert rendered.of_kind("ValidatingAdmissionPolicyBinding") == []
