"""`kuik route`: the documented routing examples, text output, invalid manifests (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kuik_testing.objects import cism, container, mirror, pod
from kuikcore.cli import main

DATA = Path(__file__).parent.parent / "data" / "routing"


def run(*args: str) -> Any:
    return CliRunner().invoke(main, ["route", *args], catch_exceptions=False)


@pytest.mark.parametrize("example", ["nginx-unprivileged", "team-and-global-mirror"])
def test_documented_examples_as_json(example: str) -> None:
    result = run(
        str(DATA / example / "pod.yaml"), "--cluster", f"dir:{DATA / example / 'cluster'}", "--json"
    )
    assert result.exit_code == 0, result.output
    expected = json.loads((DATA / example / "expected.json").read_text())
    document = json.loads(result.stdout)
    assert document.pop("mode") == {"mode": "enforce", "source": "config webhook.mode"}
    assert document == expected


def test_text_output_lists_alternatives_and_sources() -> None:
    example = DATA / "team-and-global-mirror"
    result = run(str(example / "pod.yaml"), "--cluster", f"dir:{example / 'cluster'}")
    assert result.exit_code == 0, result.output
    mode, *lines = result.stdout.splitlines()
    assert mode == "mode: enforce (config webhook.mode): the webhook patches the Pod"
    assert lines[0] == "container api: docker-registry.example.com/my-app/api:v2"
    assert lines[1].split() == [
        "1.",
        "fast-registry.internal/my-app-cache/my-app/api:v2",
        "ImageSetMirror/my-app/team-mirror",
        "(pull",
        "secret",
        "my-app/fast-registry-secret)",
    ]
    assert lines[4].split()[:3] == ["4.", "docker-registry.example.com/my-app/api:v2", "original"]


def write(path: Path, *docs: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs))
    return path


POD = pod(
    container("app", "nginx:1.29"),
    container("local", "app:dev", policy="Never"),
    init=[container("setup", "busybox:1.36")],
    policy="IfNotPresent",
)


def test_init_containers_skips_and_broken_filter(tmp_path: Path) -> None:
    pod = write(tmp_path / "pod.yaml", POD)
    cluster = tmp_path / "cluster"
    write(
        cluster / "a.yaml",
        cism(
            "good", mirror("good.example", "/m"), priority=-1, filter={"include": [{"image": ".*"}]}
        ),
    )
    # label selectors cannot be checked by the API server: such a CR is skipped, not fatal
    write(
        cluster / "deep" / "er" / "b.yml",
        cism("broken", mirror("broken.example", "/m"), filter={"include": [{"label": "==="}]}),
    )
    result = run(str(pod), "--cluster", f"dir:{cluster}", "--json")
    assert result.exit_code == 0, result.output
    containers = json.loads(result.stdout)["containers"]
    assert [(c["name"], c["type"]) for c in containers] == [
        ("app", "container"),
        ("local", "container"),
        ("setup", "init"),
    ]
    assert [a["image"] for a in containers[0]["alternatives"]] == [
        "good.example/m/library/nginx:1.29",
        "docker.io/library/nginx:1.29",
    ]
    assert containers[1]["alternatives"] == []
    assert "Never" in containers[1]["skipped"]
    assert containers[2]["alternatives"][0] == {
        "image": "good.example/m/library/busybox:1.36",
        "source": "ClusterImageSetMirror/good",
    }
    assert (
        "warning: skipping ClusterImageSetMirror/broken: spec.filter.include[0].label"
        in result.stderr
    )


def test_config_file_options(tmp_path: Path) -> None:
    pod = write(tmp_path / "pod.yaml", POD)
    cluster = tmp_path / "cluster"
    write(
        cluster / "a.yaml",
        cism("good", mirror("good.example", "/m"), imageFilter={"include": [".*"]}),
    )
    config = tmp_path / "config.yaml"
    config.write_text("routing:\n  rewriteOnNeverImagePullPolicy: true\n")
    result = run(str(pod), "--cluster", f"dir:{cluster}", "--config", str(config), "--json")
    assert result.exit_code == 0, result.output
    local = json.loads(result.stdout)["containers"][1]
    assert "skipped" not in local
    assert [a["image"] for a in local["alternatives"]] == [
        "docker.io/library/app:dev",
        "good.example/m/library/app:dev",
    ]


def test_without_cluster_only_the_original(tmp_path: Path) -> None:
    result = run(str(write(tmp_path / "pod.yaml", POD)), "--json")
    assert result.exit_code == 0
    first = json.loads(result.stdout)["containers"][0]
    assert first["alternatives"] == [
        {"image": "docker.io/library/nginx:1.29", "source": "original"}
    ]


def test_invalid_cr_names_file_and_document(tmp_path: Path) -> None:
    pod = write(tmp_path / "pod.yaml", POD)
    cluster = tmp_path / "cluster"
    bad = cism("bad", mirror("x.example", "/m"), imageFilter={"include": ["["]})
    crs = write(
        cluster / "crs.yaml",
        cism("ok", mirror("ok.example", "/m")),
        {"apiVersion": "v1", "kind": "ConfigMap"},
        bad,
    )
    result = run(str(pod), "--cluster", f"dir:{cluster}")
    assert result.exit_code == 2
    assert f"{crs}, document 3" in result.stderr
    assert "ClusterImageSetMirror bad" in result.stderr
    assert "spec.imageFilter.include[0]" in result.stderr
    assert result.stdout == ""


def test_invalid_yaml_names_file_and_document(tmp_path: Path) -> None:
    pod = write(tmp_path / "pod.yaml", POD)
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "broken.yaml").write_text("a: 1\n---\nb: [unclosed\n")
    result = run(str(pod), "--cluster", f"dir:{cluster}")
    assert result.exit_code == 2
    assert f"{cluster / 'broken.yaml'}, document 2: invalid YAML" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "expected exactly one Pod document, found 0"),
        (yaml.safe_dump_all([POD, POD]), "expected exactly one Pod document, found 2"),
        (
            "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {}\n",
            "document 1: a Pod needs spec.containers",
        ),
        ("- just\n- a list\n", "document 1: expected a mapping, got list"),
    ],
)
def test_invalid_pod_manifest(tmp_path: Path, content: str, message: str) -> None:
    pod = tmp_path / "pod.yaml"
    pod.write_text(content)
    result = run(str(pod))
    assert result.exit_code == 2
    assert message in result.stderr
    assert str(pod) in result.stderr


@pytest.mark.parametrize("cluster", ["kubernetes", "dir:", "nowhere"])
def test_unsupported_cluster_source(tmp_path: Path, cluster: str) -> None:
    result = run(str(write(tmp_path / "pod.yaml", POD)), "--cluster", cluster)
    assert result.exit_code == 2
    assert "dir:PATH" in result.stderr


def test_missing_cluster_directory(tmp_path: Path) -> None:
    result = run(str(write(tmp_path / "pod.yaml", POD)), "--cluster", f"dir:{tmp_path / 'missing'}")
    assert result.exit_code == 2
    assert "no such file or directory" in result.stderr


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.mark.parametrize(
    ("config_mode", "labels", "expected"),
    [
        (None, {}, ("enforce", "config webhook.mode")),
        ("audit", {}, ("audit", "config webhook.mode")),
        (
            None,
            {"kuik.enix.io/mode": "audit"},
            ("audit", "namespace label kuik.enix.io/mode=audit"),
        ),
        (
            "audit",
            {"kuik.enix.io/mode": "enforce"},
            ("enforce", "namespace label kuik.enix.io/mode=enforce"),
        ),
    ],
)
def test_the_mode_the_webhook_would_use(
    tmp_path: Path, config_mode: str | None, labels: dict[str, str], expected: tuple[str, str]
) -> None:
    pod_file = write(tmp_path / "pod.yaml", pod("nginx:1.29", namespace="shop"))
    cluster = tmp_path / "cluster"
    write(
        cluster / "ns.yaml",
        namespace("shop", **labels),
        namespace("other", **{"kuik.enix.io/mode": "audit"}),
    )
    args = [str(pod_file), "--cluster", f"dir:{cluster}"]
    if config_mode is not None:
        config = write(tmp_path / "config.yaml", {"webhook": {"mode": config_mode}})
        args += ["--config", str(config)]
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mode"] == {"mode": expected[0], "source": expected[1]}
    text = run(*args)
    assert text.stdout.splitlines()[0].startswith(f"mode: {expected[0]} ({expected[1]})")


def test_a_mode_label_that_is_no_mode_is_warned_about(tmp_path: Path) -> None:
    pod_file = write(tmp_path / "pod.yaml", pod("nginx:1.29", namespace="shop"))
    cluster = tmp_path / "cluster"
    write(cluster / "ns.yaml", namespace("shop", **{"kuik.enix.io/mode": "dry-run"}))
    result = run(str(pod_file), "--cluster", f"dir:{cluster}")
    assert result.exit_code == 0, result.output
    assert (
        "namespace label kuik.enix.io/mode='dry-run' is not one of enforce, audit" in result.stderr
    )
    assert result.stdout.startswith("mode: enforce (config webhook.mode)")
