"""The Helm chart, rendered by real Helm: schema-valid Kubernetes objects, webhook registration,
least-privilege RBAC, hardened pods, Redis wiring, certificates and the values schema.

`lookup` returns nothing when rendering offline, so "kept across upgrades" (webhook CA and the
Redis password) is not exercised here: only the first-install branch is.
"""

from __future__ import annotations

import base64
import copy
import textwrap
import tomllib
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from kuikcore.api import parse_resource
from kuikcore.config import Config, load_config

from .conftest import CHART_DIR, JSON, NAMESPACE, ChartRenderer, Rendered

FULLNAME = "kuik-kube-image-keeper"
SERVICES = ("webhook", "replicator", "monitor")
# Kubernetes versions the chart supports (Chart.yaml kubeVersion) up to the newest schemas.
KUBE_VERSIONS = ("1.27", kubernetes_validate.latest_version())
# Kinds from other projects' CRDs: kubernetes-validate has no schema for them. They are checked
# below by their wiring (selectors, ports, secret names) instead.
NOT_IN_CORE_SCHEMAS = {"ServiceMonitor", "Issuer", "Certificate"}
# admissionregistration.k8s.io/v1 policies are GA in 1.30: older clusters switch them off
# (validatingAdmissionPolicy.enabled=false), so they are validated against 1.30 and newer.
SINCE_1_30 = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}

HA_VALUES: JSON = {
    "global": {
        "redis": {
            "external": {
                "url": "rediss://redis.example.internal:6380/0",
                "username": "kuik",
                "passwordSecret": {"name": "redis-auth", "key": "password"},
                "caSecret": {"name": "redis-ca", "key": "ca.crt"},
            }
        },
        "configuration": {"routing": {"activeCheck": {"timeout": "500ms"}}},
    },
    "redis": {"enabled": False},
    "webhook": {
        "replicaCount": 3,
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
        "serviceMonitor": {"create": True, "extraLabels": {"release": "prometheus"}},
        "networkPolicy": {"enabled": True},
        "priorityClassName": "system-cluster-critical",
        "webhook": {"certManager": {"enabled": False}},
    },
    "replicator": {
        "replicaCount": 3,
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 6},
        "serviceMonitor": {"create": True},
        "networkPolicy": {"enabled": True, "egress": [{"ports": [{"port": 443}]}]},
    },
    "monitor": {
        "replicaCount": 3,
        "serviceMonitor": {"create": True},
        "pdb": {"maxUnavailable": "", "minAvailable": 2},
    },
}

SENTINEL_VALUES: JSON = {
    "global": {
        "redis": {
            "external": {
                "sentinel": {"hosts": ["s-0:26379", "s-1:26379"], "masterName": "kuik", "tls": True}
            }
        }
    },
    "redis": {"enabled": False, "networkPolicy": {"enabled": True}},
}

SCENARIOS = {"defaults": {}, "ha": HA_VALUES, "sentinel": SENTINEL_VALUES}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, chart: ChartRenderer) -> tuple[str, Rendered]:
    return request.param, chart.render(copy.deepcopy(SCENARIOS[request.param]))


@pytest.fixture(scope="module")
def defaults(chart: ChartRenderer) -> Rendered:
    return chart.render()


@pytest.fixture(scope="module")
def ha(chart: ChartRenderer) -> Rendered:
    return chart.render(copy.deepcopy(HA_VALUES))


def _container(workload: JSON) -> JSON:
    containers: list[JSON] = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def _env(container: JSON) -> dict[str, JSON]:
    return {e["name"]: e for e in container.get("env", [])}


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# --------------------------------------------------------------------------- lint, schemas


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_strict_is_clean(name: str) -> None:
    report = helm.lint(str(CHART_DIR), copy.deepcopy(SCENARIOS[name]), strict=True)
    assert report["errors"] == []
    assert report["messages"] == []


def test_helm_lint_strict_reports_a_typo() -> None:
    report = helm.lint(str(CHART_DIR), {"webhook": {"replicaCont": 3}}, strict=True)
    assert report["errors"] or report["messages"]
    assert "replicaCont" in str(report)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(
    scenario: tuple[str, Rendered], version: str
) -> None:
    _, rendered = scenario
    unchecked = set()
    for obj in [*rendered.objects, *rendered.crds]:
        if obj["kind"] in NOT_IN_CORE_SCHEMAS:
            unchecked.add(obj["kind"])
            continue
        at = "1.30" if obj["kind"] in SINCE_1_30 and version == "1.27" else version
        kubernetes_validate.validate(copy.deepcopy(obj), at, strict=True)
    assert unchecked <= NOT_IN_CORE_SCHEMAS


def test_admission_policies_do_not_exist_before_1_30(defaults: Rendered) -> None:
    """Why the policy has a switch: a 1.27-1.29 API server has no such kind."""
    policy = defaults.of_kind("ValidatingAdmissionPolicy")[0]
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(copy.deepcopy(policy), "1.29", strict=True)


def test_the_validator_catches_a_broken_object(defaults: Rendered) -> None:
    deployment = copy.deepcopy(defaults.component("Deployment", "webhook"))
    _container(deployment)["imagePullPolicy"] = ["IfNotPresent"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.27", strict=True)
    deployment = copy.deepcopy(defaults.component("Deployment", "webhook"))
    deployment["spec"]["template"]["spec"]["containres"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.27", strict=True)


def test_defaults_render_the_expected_objects(defaults: Rendered) -> None:
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in defaults.objects)
    for service in SERVICES:
        name = f"{FULLNAME}-{service}"
        for kind in ("Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
            assert (kind, name) in kinds
        assert ("Service", f"{name}-metrics") in kinds
        assert ("PodDisruptionBudget", name) in kinds
    assert ("StatefulSet", f"{FULLNAME}-redis") in kinds
    assert ("ConfigMap", f"{FULLNAME}-config") in kinds
    assert ("MutatingWebhookConfiguration", FULLNAME) in kinds
    assert ("ValidatingAdmissionPolicy", f"{FULLNAME}-secret-writes") in kinds
    assert ("ValidatingAdmissionPolicyBinding", f"{FULLNAME}-secret-writes") in kinds
    assert {"HorizontalPodAutoscaler", "ServiceMonitor", "NetworkPolicy"}.isdisjoint(
        k for k, _ in kinds
    )
    assert len(defaults.crds) == 5
    assert {c["spec"]["group"] for c in defaults.crds} == {"kuik.enix.io"}


def test_services_select_the_pods_they_front(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    pods = [
        w["spec"]["template"]
        for w in rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    ]
    for service in rendered.of_kind("Service"):
        targets = [
            p for p in pods if _matches(service["spec"]["selector"], p["metadata"]["labels"])
        ]
        assert len(targets) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in targets[0]["spec"]["containers"][0]["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for obj in rendered.of_kind(kind):
            selector = (obj["spec"].get("selector") or obj["spec"]["podSelector"])["matchLabels"]
            assert sum(_matches(selector, p["metadata"]["labels"]) for p in pods) == 1


# --------------------------------------------------------------------------- webhook registration


def test_webhook_registration(defaults: Rendered) -> None:
    mwc = defaults.get("MutatingWebhookConfiguration", FULLNAME)
    [hook] = mwc["webhooks"]
    [rule] = hook["rules"]
    assert rule["operations"] == ["CREATE", "UPDATE"]
    assert rule["resources"] == ["pods", "pods/ephemeralcontainers"]
    assert rule["apiGroups"] == [""]
    assert rule["apiVersions"] == ["v1"]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "NoneOnDryRun"
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["timeoutSeconds"] == 5
    # The service answers within its own deadline, before the API server gives up on it.
    assert hook["timeoutSeconds"] > Config().webhook.deadline.total_seconds()
    [ns_rule] = hook["namespaceSelector"]["matchExpressions"]
    assert ns_rule == {
        "key": "kubernetes.io/metadata.name",
        "operator": "NotIn",
        "values": ["kube-system", NAMESPACE],
    }
    assert hook["objectSelector"]["matchExpressions"] == [
        {
            "key": "kube-image-keeper.enix.io/image-caching-policy",
            "operator": "NotIn",
            "values": ["ignore"],
        }
    ]


def test_webhook_service_reaches_the_webhook_listener(defaults: Rendered) -> None:
    hook = defaults.get("MutatingWebhookConfiguration", FULLNAME)["webhooks"][0]
    ref = hook["clientConfig"]["service"]
    assert ref["namespace"] == NAMESPACE
    assert ref["path"] == "/mutate--v1-pod"
    service = defaults.get("Service", ref["name"])
    [port] = [p for p in service["spec"]["ports"] if p["port"] == ref["port"]]
    container = _container(defaults.component("Deployment", "webhook"))
    [container_port] = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert f"--listen=:{container_port['containerPort']}" in container["args"]


def test_cert_manager_certificate_is_injected_and_mounted(defaults: Rendered) -> None:
    mwc = defaults.get("MutatingWebhookConfiguration", FULLNAME)
    namespace, name = mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"].split("/")
    assert namespace == NAMESPACE
    certificate = defaults.get("Certificate", name)
    assert "caBundle" not in mwc["webhooks"][0]["clientConfig"]
    service = mwc["webhooks"][0]["clientConfig"]["service"]["name"]
    assert f"{service}.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    issuer = certificate["spec"]["issuerRef"]
    assert defaults.get(issuer["kind"], issuer["name"])["spec"] == {"selfSigned": {}}
    _assert_tls_volume(defaults, certificate["spec"]["secretName"])


def test_cert_manager_with_an_existing_issuer(chart: ChartRenderer) -> None:
    ref = {"kind": "ClusterIssuer", "name": "corp-ca"}
    rendered = chart.render(
        {
            "webhook": {
                "webhook": {
                    "certManager": {"createCertificateIssuer": False, "certificateIssuerRef": ref}
                }
            }
        }
    )
    assert rendered.of_kind("Issuer") == []
    assert rendered.of_kind("Certificate")[0]["spec"]["issuerRef"] == ref


def test_generated_certificate_without_cert_manager(ha: Rendered) -> None:
    assert ha.of_kind("Certificate") == []
    assert ha.of_kind("Issuer") == []
    mwc = ha.get("MutatingWebhookConfiguration", FULLNAME)
    assert "annotations" not in mwc["metadata"]
    client = mwc["webhooks"][0]["clientConfig"]
    ca = x509.load_pem_x509_certificate(base64.b64decode(client["caBundle"]))
    secret_name = _assert_tls_volume(ha, None)
    secret = ha.get("Secret", secret_name)
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["data"]["ca.crt"] == client["caBundle"]
    serving = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    serving.verify_directly_issued_by(ca)
    names = serving.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)
    assert f"{client['service']['name']}.{NAMESPACE}.svc" in names
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN RSA PRIVATE KEY")


def _assert_tls_volume(rendered: Rendered, secret_name: str | None) -> str:
    deployment = rendered.component("Deployment", "webhook")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounted = volumes["tls"]["secret"]["secretName"]
    if secret_name is not None:
        assert mounted == secret_name
    [mount] = [m for m in _container(deployment)["volumeMounts"] if m["name"] == "tls"]
    args = _container(deployment)["args"]
    assert f"--tls-cert={mount['mountPath']}/tls.crt" in args
    assert f"--tls-key={mount['mountPath']}/tls.key" in args
    return str(mounted)


# --------------------------------------------------------------------------- pods


def test_pods_are_hardened_and_probed(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    workloads = rendered.of_kind("Deployment") + rendered.of_kind("StatefulSet")
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert container["resources"]["requests"]
            assert container["livenessProbe"]
            assert container["readinessProbe"]
    for service in SERVICES:
        deployment = rendered.component("Deployment", service)
        container = _container(deployment)
        assert container["command"] == [f"kuik-{service}"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
        [metrics] = [p for p in container["ports"] if p["name"] == "metrics"]
        assert metrics["containerPort"] == 8080
        assert "--metrics-listen=:8080" in container["args"]
        spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} >= {"kubernetes.io/hostname"}


def test_config_map_is_the_operator_configuration(ha: Rendered, tmp_path: Path) -> None:
    config_map = ha.get("ConfigMap", f"{FULLNAME}-config")
    text = config_map["data"]["config.yaml"]
    assert yaml.safe_load(text) == HA_VALUES["global"]["configuration"]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    assert load_config(path).routing.active_check.timeout.total_seconds() == 0.5
    for service in SERVICES:
        pod = ha.component("Deployment", service)["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
        [mount] = [
            m
            for m in _container({"spec": {"template": {"spec": pod}}})["volumeMounts"]
            if m["name"] == "config"
        ]
        assert "--config=" + mount["mountPath"] + "/config.yaml" in pod["containers"][0]["args"]


def test_default_config_map_loads_as_built_in_defaults(defaults: Rendered, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(defaults.get("ConfigMap", f"{FULLNAME}-config")["data"]["config.yaml"])
    assert load_config(path) == Config()


def test_a_config_change_rolls_every_service(chart: ChartRenderer, defaults: Rendered) -> None:
    changed = chart.render({"global": {"configuration": {"skipLabels": ["team=legacy"]}}})
    for service in SERVICES:
        before = defaults.component("Deployment", service)["spec"]["template"]["metadata"]
        after = changed.component("Deployment", service)["spec"]["template"]["metadata"]
        assert before["annotations"]["checksum/config"] != after["annotations"]["checksum/config"]
        assert before["annotations"]["checksum/redis"] == after["annotations"]["checksum/redis"]


def test_ha_replicas_autoscaling_and_disruption_budgets(ha: Rendered) -> None:
    for service in ("webhook", "replicator"):
        deployment = ha.component("Deployment", service)
        assert "replicas" not in deployment["spec"]  # the HPA owns it
        hpa = ha.component("HorizontalPodAutoscaler", service)
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 6)
    assert ha.component("Deployment", "monitor")["spec"]["replicas"] == 3
    assert ha.component("PodDisruptionBudget", "monitor")["spec"] == {
        "minAvailable": 2,
        "selector": ha.component("Deployment", "monitor")["spec"]["selector"],
    }
    assert ha.component("PodDisruptionBudget", "webhook")["spec"]["maxUnavailable"] == 1
    pod = ha.component("Deployment", "webhook")["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"


def test_service_monitors_scrape_the_metrics_services(ha: Rendered) -> None:
    monitors = ha.of_kind("ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == set(
        SERVICES
    )
    for monitor in monitors:
        services = [
            s
            for s in ha.of_kind("Service")
            if _matches(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
            and any(
                p["name"] == monitor["spec"]["endpoints"][0]["port"] for p in s["spec"]["ports"]
            )
        ]
        assert [s["metadata"]["name"] for s in services] == [
            monitor["metadata"]["name"] + "-metrics"
        ]
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert (
        ha.component("ServiceMonitor", "webhook")["metadata"]["labels"]["release"] == "prometheus"
    )


def test_network_policies(ha: Rendered) -> None:
    webhook = ha.component("NetworkPolicy", "webhook")
    ports = [p["port"] for rule in webhook["spec"]["ingress"] for p in rule["ports"]]
    assert ports == ["metrics", "webhook"]
    assert webhook["spec"]["policyTypes"] == ["Ingress"]
    replicator = ha.component("NetworkPolicy", "replicator")
    assert replicator["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert replicator["spec"]["egress"] == [{"ports": [{"port": 443}]}]


# --------------------------------------------------------------------------- Redis


def test_bundled_redis(defaults: Rendered) -> None:
    statefulset = defaults.get("StatefulSet", f"{FULLNAME}-redis")
    conf = defaults.get("ConfigMap", f"{FULLNAME}-redis")["data"]["redis.conf"]
    assert "appendonly yes" in conf.splitlines()
    assert "requirepass" not in conf.replace("# requirepass", "")  # the password is not in it
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    secret = defaults.get("Secret", f"{FULLNAME}-redis")
    assert len(base64.b64decode(secret["data"]["redis-password"])) == 32
    container = _container(statefulset)
    assert "REDIS_PASSWORD" not in " ".join(container["command"])
    for service in SERVICES:
        env = _env(_container(defaults.component("Deployment", service)))
        assert env["KUIK_REDIS_URL"]["value"] == (
            f"redis://{FULLNAME}-redis.{NAMESPACE}.svc:6379/0"
        )
        assert env["KUIK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "redis-password",
        }


def test_external_redis(ha: Rendered) -> None:
    assert ha.of_kind("StatefulSet") == []
    assert not [s for s in ha.of_kind("Secret") if s["metadata"]["name"].endswith("-redis")]
    for service in SERVICES:
        container = _container(ha.component("Deployment", service))
        env = _env(container)
        assert env["KUIK_REDIS_URL"]["value"] == "rediss://redis.example.internal:6380/0"
        assert env["KUIK_REDIS_USERNAME"]["value"] == "kuik"
        assert env["KUIK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "redis-auth",
            "key": "password",
        }
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "redis-ca"]
        assert env["KUIK_REDIS_CA_FILE"]["value"] == f"{mount['mountPath']}/ca.crt"


def test_external_redis_through_sentinel(chart: ChartRenderer) -> None:
    rendered = chart.render(copy.deepcopy(SENTINEL_VALUES))
    env = _env(_container(rendered.component("Deployment", "replicator")))
    assert env["KUIK_REDIS_URL"]["value"] == "rediss+sentinel://s-0:26379,s-1:26379/kuik"
    assert "KUIK_REDIS_PASSWORD" not in env  # no passwordSecret given


def test_config_and_redis_changes_roll_pods_separately(chart: ChartRenderer) -> None:
    a = chart.render(copy.deepcopy(HA_VALUES))
    values = copy.deepcopy(HA_VALUES)
    values["global"]["redis"]["external"]["url"] = "rediss://other:6380/0"
    b = chart.render(values)
    before = a.component("Deployment", "monitor")["spec"]["template"]["metadata"]["annotations"]
    after = b.component("Deployment", "monitor")["spec"]["template"]["metadata"]["annotations"]
    assert before["checksum/redis"] != after["checksum/redis"]
    assert before["checksum/config"] == after["checksum/config"]


# --------------------------------------------------------------------------- RBAC


def _allows(rules: list[JSON], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r.get("apiGroups", [])
        and resource in r.get("resources", [])
        and verb in r.get("verbs", [])
        for r in rules
    )


def test_rbac_is_least_privilege(defaults: Rendered) -> None:
    rules = {s: defaults.component("ClusterRole", s)["rules"] for s in SERVICES}
    for service, role_rules in rules.items():
        for rule in role_rules:
            assert "*" not in rule["verbs"], service
            assert "*" not in rule["resources"], service
            assert "*" not in rule["apiGroups"], service
        for kind in ("clusterimagesetmirrors", "imagesetmirrors", "clusterimagesetavailabilities"):
            assert _allows(role_rules, "kuik.enix.io", kind, "watch"), (service, kind)
        assert _allows(role_rules, "", "pods", "watch")
        assert not _allows(role_rules, "", "pods", "update")
        assert not _allows(role_rules, "kuik.enix.io", "clusterimagesetmirrors", "delete")
    # Only the webhook writes Secrets (pull-secret copies); only the replicator deletes them.
    writers = {s for s, r in rules.items() if _allows(r, "", "secrets", "create")}
    deleters = {s for s, r in rules.items() if _allows(r, "", "secrets", "delete")}
    assert (writers, deleters) == ({"webhook"}, {"replicator"})
    for verb in ("create", "update", "patch", "delete"):
        assert not _allows(rules["monitor"], "", "secrets", verb)
    # The cluster id is the kube-system Namespace's UID: that one Namespace, read only.
    for service in ("webhook", "replicator"):
        [rule] = [r for r in rules[service] if "namespaces" in r["resources"]]
        assert (rule["resourceNames"], rule["verbs"]) == (["kube-system"], ["get"])
    # Status: the replicator owns (C)ISM status and finalizers, the monitor CISA status.
    assert _allows(rules["replicator"], "kuik.enix.io", "clusterimagesetmirrors/status", "patch")
    assert _allows(rules["replicator"], "kuik.enix.io", "clusterreplicatedimagesets", "patch")
    assert not _allows(
        rules["replicator"], "kuik.enix.io", "clusterimagesetavailabilities/status", "patch"
    )
    assert _allows(
        rules["monitor"], "kuik.enix.io", "clusterimagesetavailabilities/status", "patch"
    )
    assert not _allows(rules["monitor"], "kuik.enix.io", "clusterimagesetmirrors/status", "patch")
    assert not any("/status" in res for r in rules["webhook"] for res in r["resources"])
    # every service may record Events (registry health transitions), none may change them
    for service in SERVICES:
        assert _allows(rules[service], "events.k8s.io", "events", "create")
        for verb in ("update", "patch", "delete"):
            assert not _allows(rules[service], "events.k8s.io", "events", verb)
    for service in SERVICES:
        binding = defaults.component("ClusterRoleBinding", service)
        deployment = defaults.component("Deployment", service)
        [subject] = binding["subjects"]
        assert subject["name"] == deployment["spec"]["template"]["spec"]["serviceAccountName"]
        assert (
            binding["roleRef"]["name"]
            == defaults.component("ClusterRole", service)["metadata"]["name"]
        )


def test_rbac_and_service_account_can_be_left_to_the_user(chart: ChartRenderer) -> None:
    rendered = chart.render(
        {
            "monitor": {
                "rbac": {"create": False},
                "serviceAccount": {"create": False, "name": "mine"},
            }
        }
    )
    assert all(
        o["metadata"]["labels"]["app.kubernetes.io/component"] != "monitor"
        for kind in ("ClusterRole", "ClusterRoleBinding", "ServiceAccount")
        for o in rendered.of_kind(kind)
    )
    pod = rendered.component("Deployment", "monitor")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "mine"


# --------------------------------------------------------------------------- values


def test_parts_can_be_switched_off(chart: ChartRenderer) -> None:
    rendered = chart.render({"webhook": {"enabled": False}, "monitor": {"enabled": False}})
    assert [
        d["metadata"]["labels"]["app.kubernetes.io/component"]
        for d in rendered.of_kind("Deployment")
    ] == ["replicator"]
    assert rendered.of_kind("MutatingWebhookConfiguration") == []


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"webhook": {"replicaCont": 3}}, "replicaCont"),
        ({"global": {"imag": {"tag": "x"}}}, "imag"),
        ({"replicator": {"pdb": {"minAvaliable": 1}}}, "minAvaliable"),
        ({"webhook": {"webhook": {"timeoutSeconds": 60}}}, "timeoutSeconds"),
        ({"global": {"image": {"pullPolicy": "Sometimes"}}}, "pullPolicy"),
        ({"redis": {"persistance": {}}}, "persistance"),
        ({"global": {"redis": {"external": {"url": "http://redis:6379"}}}}, "url"),
        ({"monitor": {"autoscaling": {"enabled": True}}}, "autoscaling"),
        ({"global": {"verbosity": "loud"}}, "verbosity"),
    ],
)
def test_schema_rejects_typos_and_bad_values(
    chart: ChartRenderer, values: JSON, where: str
) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        chart.render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"configuration": {"skipLabels": []}}, "global.configuration"),
        ({"global": {"redis": {"external": {"url": "redis://r:6379"}}}}, "redis.enabled=false"),
        ({"redis": {"enabled": False}}, "no Redis"),
        (
            {
                "redis": {"enabled": False},
                "global": {"redis": {"external": {"sentinel": {"hosts": ["s:26379"]}}}},
            },
            "masterName",
        ),
    ],
)
def test_inconsistent_values_fail_with_a_message(
    chart: ChartRenderer, values: JSON, message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        chart.render(values)


def test_notes_tell_what_to_do_next(defaults: Rendered) -> None:
    assert f"kubectl -n {NAMESPACE} get pods" in defaults.notes
    assert "kube-system and kuik-system" in defaults.notes
    assert f"svc/{FULLNAME}-monitor-metrics 8080" in defaults.notes
    defaults.get("Service", f"{FULLNAME}-monitor-metrics")
    # The example resource in the notes is one kuik accepts.
    example = defaults.notes.split("<<'YAML'\n", 1)[1].split("YAML\n", 1)[0]
    resource = parse_resource(yaml.safe_load(textwrap.dedent(example)))
    assert resource.kind == "ClusterImageSetMirror"


def test_image_defaults_to_the_app_version(chart: ChartRenderer, defaults: Rendered) -> None:
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    images = {_container(defaults.component("Deployment", s))["image"] for s in SERVICES}
    assert images == {f"kube-image-keeper:{app_version}"}
    pinned = chart.render({"global": {"image": {"repository": "r.example/kuik", "tag": "1.2.3"}}})
    assert _container(pinned.component("Deployment", "monitor"))["image"] == "r.example/kuik:1.2.3"


def test_verbosity_sets_every_service_log_level(chart: ChartRenderer) -> None:
    rendered = chart.render({"global": {"verbosity": "DEBUG"}})
    for service in SERVICES:
        assert "--log-level=debug" in _container(rendered.component("Deployment", service))["args"]


def test_bundled_redis_network_policy_admits_only_this_release(chart: ChartRenderer) -> None:
    rendered = chart.render({"redis": {"networkPolicy": {"enabled": True}}})
    policy = rendered.component("NetworkPolicy", "redis")
    kubernetes_validate.validate(copy.deepcopy(policy), "1.27", strict=True)
    [rule] = policy["spec"]["ingress"]
    peer = rule["from"][0]["podSelector"]["matchLabels"]
    for service in SERVICES:
        labels = rendered.component("Deployment", service)["spec"]["template"]["metadata"]
        assert _matches(peer, labels["labels"])
    other = {"app.kubernetes.io/name": "kube-image-keeper", "app.kubernetes.io/instance": "other"}
    assert not _matches(peer, other)


def test_chart_app_version_is_the_packages_version() -> None:
    chart_meta = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    root = CHART_DIR.parents[1]
    for pyproject in (
        "libs/kuikcore",
        "services/webhook",
        "services/replicator",
        "services/monitor",
    ):
        project = tomllib.loads((root / pyproject / "pyproject.toml").read_text())["project"]
        assert project["version"] == chart_meta["appVersion"], pyproject
    for name in SERVICES:
        sub = yaml.safe_load((CHART_DIR / "charts" / name / "Chart.yaml").read_text())
        assert sub["appVersion"] == chart_meta["appVersion"]
        [dep] = [d for d in chart_meta["dependencies"] if d["name"] == name]
        assert (dep["version"], dep["condition"]) == (sub["version"], f"{name}.enabled")
