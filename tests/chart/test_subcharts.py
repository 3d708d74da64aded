"""Each subchart on its own, rendered and linted by real Helm: it lints clean, renders objects the
Kubernetes schemas accept, validates its own values, and renders the same objects alone as inside
the umbrella (apart from the ConfigMap a service chart brings when alone).

The shared named templates come from the kuik-common library chart (charts/kuik-common), which
each subchart reaches through a symlink in its own charts/ directory.
"""

from __future__ import annotations

import copy
import json
import tarfile
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from .conftest import CHART_DIR, JSON, NAMESPACE, ChartRenderer, Rendered
from .test_chart import KUBE_VERSIONS, NOT_IN_CORE_SCHEMAS, SERVICES

PARTS = (*SERVICES, "redis")
FULLNAME = "kuik-kube-image-keeper"
EXTERNAL_REDIS: JSON = {
    "global": {
        "redis": {
            "external": {
                "url": "rediss://redis.example.internal:6380/0",
                "passwordSecret": {"name": "redis-auth", "key": "password"},
                "caSecret": {"name": "redis-ca", "key": "ca.crt"},
            }
        }
    }
}


def _alone(part: str, values: JSON | None = None) -> Rendered:
    return ChartRenderer(CHART_DIR / "charts" / part).render(copy.deepcopy(values or {}))


def _container(workload: JSON) -> JSON:
    [container] = workload["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.parametrize("values", [{}, EXTERNAL_REDIS], ids=["defaults", "external-redis"])
@pytest.mark.parametrize("part", [*PARTS, "kuik-common"])
def test_each_chart_alone_passes_strict_lint(part: str, values: JSON) -> None:
    report = helm.lint(str(CHART_DIR / "charts" / part), copy.deepcopy(values), strict=True)
    assert report["errors"] == []
    assert report["messages"] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("part", PARTS)
def test_each_part_alone_renders_valid_kubernetes_objects(part: str, version: str) -> None:
    rendered = _alone(part)
    assert rendered.of_kind("Deployment") or rendered.of_kind("StatefulSet")
    for obj in rendered.objects:
        if obj["kind"] not in NOT_IN_CORE_SCHEMAS:
            kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)


@pytest.mark.parametrize("part", SERVICES)
def test_a_service_alone_mounts_its_own_config_map(part: str) -> None:
    rendered = _alone(part, {"global": {"configuration": {"skipLabels": ["team=legacy"]}}})
    [config_map] = rendered.of_kind("ConfigMap")
    assert config_map["metadata"]["name"] == f"{FULLNAME}-{part}-config"
    assert yaml.safe_load(config_map["data"]["config.yaml"]) == {"skipLabels": ["team=legacy"]}
    pod = rendered.component("Deployment", part)["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "config"]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]


@pytest.mark.parametrize("part", SERVICES)
def test_a_service_alone_finds_the_redis_chart_of_the_same_fullname(part: str) -> None:
    """Installed as separate releases, the parts meet through global.fullnameOverride."""
    shared = {"global": {"fullnameOverride": "kuik"}}
    redis = _alone("redis", shared)
    env = {
        e["name"]: e for e in _container(_alone(part, shared).component("Deployment", part))["env"]
    }
    service = redis.get("Service", "kuik-redis")
    assert env["KUIK_REDIS_URL"]["value"] == (
        f"redis://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/0"
    )
    secret = env["KUIK_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret["key"] in redis.get("Secret", secret["name"])["data"]


@pytest.mark.parametrize("part", SERVICES)
def test_a_service_alone_checks_global_redis(part: str) -> None:
    values = {"global": {"redis": {"external": {"sentinel": {"hosts": ["s-0:26379"]}}}}}
    with pytest.raises(helm.HelmError, match="masterName"):
        _alone(part, values)


@pytest.mark.parametrize(
    ("part", "values", "where"),
    [
        ("webhook", {"replicaCont": 3}, "replicaCont"),
        ("webhook", {"webhook": {"timeoutSeconds": 60}}, "timeoutSeconds"),
        ("replicator", {"pdb": {"minAvaliable": 1}}, "minAvaliable"),
        ("monitor", {"autoscaling": {"enabled": True}}, "autoscaling"),
        ("redis", {"persistance": {}}, "persistance"),
    ],
)
def test_a_part_alone_validates_its_own_values(part: str, values: JSON, where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=where):
        _alone(part, values)


@pytest.mark.parametrize("part", SERVICES)
def test_a_service_renders_the_same_objects_alone_as_in_the_umbrella(
    chart: ChartRenderer, part: str
) -> None:
    """The part's values under its key in the umbrella, or at the top alone: the same objects,
    except the ConfigMap (the umbrella's shared one, or the part's own)."""
    own: JSON = {"replicaCount": 2, "serviceMonitor": {"create": True}}
    umbrella = chart.render(
        {part: own, **copy.deepcopy(EXTERNAL_REDIS), "redis": {"enabled": False}}
    )
    alone = _alone(part, {**own, **EXTERNAL_REDIS})
    inside = [
        o
        for o in umbrella.objects
        if o["metadata"].get("labels", {}).get("helm.sh/chart", "").startswith(f"{part}-")
    ]
    outside = [o for o in alone.objects if o["kind"] != "ConfigMap"]
    for obj in outside:
        if obj["kind"] == "Deployment":
            [volume] = [
                v for v in obj["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
            ]
            assert volume["configMap"]["name"] == f"{FULLNAME}-{part}-config"
            volume["configMap"]["name"] = f"{FULLNAME}-config"

    def key(o: JSON) -> str:
        return json.dumps(o, sort_keys=True)

    assert {o["kind"] for o in inside} >= {"Deployment", "ClusterRole", "ServiceMonitor"}
    assert sorted(map(key, inside)) == sorted(map(key, outside))


def test_subchart_global_defaults_are_the_umbrellas() -> None:
    """The umbrella's `global` wins over a subchart's, key by key; a subchart default that the
    umbrella lacks would leak into its renders (the checksum/redis annotation, for one)."""
    umbrella = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["global"]

    def assert_within(sub: JSON, top: JSON, at: str) -> None:
        for k, v in sub.items():
            assert k in top, f"{at}.{k}"
            if isinstance(v, dict):
                assert_within(v, top[k], f"{at}.{k}")
            else:
                assert v == top[k], f"{at}.{k}"

    for part in PARTS:
        values = yaml.safe_load((CHART_DIR / "charts" / part / "values.yaml").read_text())
        assert_within(values["global"], umbrella, f"{part}: global")


def test_service_schemas_describe_the_same_common_keys() -> None:
    """The three service schemas are split copies: the keys they share must not drift apart."""
    schemas = [
        json.loads((CHART_DIR / "charts" / s / "values.schema.json").read_text()) for s in SERVICES
    ]
    common = set.intersection(*(set(s["properties"]) for s in schemas))
    assert {"replicaCount", "pdb", "serviceMonitor", "networkPolicy", "global"} <= common
    for key in common:
        assert len({json.dumps(s["properties"][key], sort_keys=True) for s in schemas}) == 1, key
    assert len({json.dumps(s["$defs"]["stringMap"], sort_keys=True) for s in schemas}) == 1


def test_the_packaged_chart_carries_the_library_in_every_part(
    chart: ChartRenderer, tmp_path: Path
) -> None:
    """`helm package` follows the symlinks: the archive renders what the directory renders."""
    for path in (CHART_DIR, *(CHART_DIR / "charts" / p for p in PARTS)):
        statuses = {d["name"]: d["status"] for d in helm.dependency_list(path)}
        assert statuses["kuik-common"] == "unpacked", path
    archive = Path(helm.package(CHART_DIR, destination=tmp_path))
    with tarfile.open(archive) as tar:
        members = {m.name: m for m in tar.getmembers()}
    for part in PARTS:
        helpers = members[
            f"kube-image-keeper/charts/{part}/charts/kuik-common/templates/_helpers.tpl"
        ]
        assert helpers.isfile()

    def objects(rendered: Rendered) -> list[str]:
        # The generated Redis password differs from one render to the next.
        return sorted(
            json.dumps({**o, "data": "..."} if o["kind"] == "Secret" else o, sort_keys=True)
            for o in rendered.objects
        )

    assert objects(ChartRenderer(archive).render()) == objects(chart.render())
