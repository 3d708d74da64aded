"""`existingSecret` values: with them the chart generates no Redis password and no webhook
certificate, so `helm template` (Argo CD, Flux) renders the same objects every time.

Without them every offline render makes new ones (`lookup` finds nothing), which a GitOps tool
shows as a permanent diff and applies as a rotated password or certificate.
"""

from __future__ import annotations

import base64
import copy

import helm_python as helm
import pytest

from .conftest import JSON, ChartRenderer, Rendered

FULLNAME = "kuik-kube-image-keeper"
CA_BUNDLE = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
GITOPS_VALUES: JSON = {
    "global": {"redis": {"existingSecret": {"name": "my-redis", "key": "pass"}}},
    "webhook": {
        "webhook": {
            "certManager": {"enabled": False},
            "existingSecret": "my-webhook-tls",
            "caBundle": CA_BUNDLE.decode(),
        }
    },
}
SERVICES = ("webhook", "replicator", "monitor")


def _env(workload: JSON) -> dict[str, JSON]:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in container.get("env", [])}


def _tls_secret(rendered: Rendered) -> str:
    volumes = rendered.component("Deployment", "webhook")["spec"]["template"]["spec"]["volumes"]
    [tls] = [v for v in volumes if v["name"] == "tls"]
    return str(tls["secret"]["secretName"])


def test_without_existing_secrets_every_render_differs(chart: ChartRenderer) -> None:
    values: JSON = {"webhook": {"webhook": {"certManager": {"enabled": False}}}}
    a, b = chart.render(copy.deepcopy(values)), chart.render(copy.deepcopy(values))
    assert a.get("Secret", f"{FULLNAME}-redis") != b.get("Secret", f"{FULLNAME}-redis")
    cert = _tls_secret(a)
    assert a.get("Secret", cert)["data"] != b.get("Secret", cert)["data"]


def test_existing_secrets_render_the_same_every_time(chart: ChartRenderer) -> None:
    a, b = chart.render(copy.deepcopy(GITOPS_VALUES)), chart.render(copy.deepcopy(GITOPS_VALUES))
    assert a.objects == b.objects
    assert a.of_kind("Secret") == []  # nothing generated
    assert a.of_kind("Certificate") == []
    assert a.of_kind("Issuer") == []


def test_existing_redis_secret_reaches_redis_and_every_service(chart: ChartRenderer) -> None:
    rendered = chart.render(copy.deepcopy(GITOPS_VALUES))
    ref = {"name": "my-redis", "key": "pass"}
    redis = _env(rendered.get("StatefulSet", f"{FULLNAME}-redis"))
    assert redis["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref
    assert redis["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == ref
    for service in SERVICES:
        env = _env(rendered.component("Deployment", service))
        assert env["KUIK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == ref


def test_existing_webhook_certificate_is_mounted_and_trusted(chart: ChartRenderer) -> None:
    rendered = chart.render(copy.deepcopy(GITOPS_VALUES))
    assert _tls_secret(rendered) == "my-webhook-tls"
    mwc = rendered.get("MutatingWebhookConfiguration", FULLNAME)
    assert mwc["webhooks"][0]["clientConfig"]["caBundle"] == CA_BUNDLE.decode()
    assert "annotations" not in mwc["metadata"]


def test_existing_webhook_certificate_wins_over_cert_manager(chart: ChartRenderer) -> None:
    values = copy.deepcopy(GITOPS_VALUES)
    values["webhook"]["webhook"]["certManager"]["enabled"] = True
    rendered = chart.render(values)
    assert rendered.of_kind("Certificate") == []
    assert rendered.of_kind("Issuer") == []
    mwc = rendered.get("MutatingWebhookConfiguration", FULLNAME)
    assert "annotations" not in mwc["metadata"]  # no CA injection from another Secret
    assert _tls_secret(rendered) == "my-webhook-tls"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"webhook": {"webhook": {"existingSecret": "tls"}}}, "caBundle"),
        (
            {
                "redis": {"enabled": False},
                "global": {
                    "redis": {
                        "existingSecret": {"name": "s"},
                        "external": {"url": "redis://r:6379"},
                    }
                },
            },
            "passwordSecret",
        ),
    ],
)
def test_incomplete_existing_secret_values_fail(
    chart: ChartRenderer, values: JSON, message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values)
