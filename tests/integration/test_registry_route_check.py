"""`kuik route --check`: real checks of a Pod's alternatives against real registries."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kuik_testing.images import push_image, synthetic_image
from kuik_testing.registry import RegistryServer
from kuikcore.cli import main


def _write_cluster(tmp_path: Path, original: RegistryServer, mirror: RegistryServer) -> Path:
    auth = base64.b64encode(f"{mirror.username}:{mirror.password}".encode()).decode()
    config = json.dumps({"auths": {mirror.host: {"auth": auth}}})
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "mirror.yaml").write_text(
        f"""apiVersion: kuik.enix.io/v1alpha1
kind: ClusterImageSetMirror
metadata:
  name: global-mirror
spec:
  priority: -1
  filter:
    include:
    - image: .*
  mirrors:
  - registry: "{mirror.host}"
    path: /mirror
    credentialSecret:
      name: mirror-secret
      namespace: kuik-system
---
apiVersion: v1
kind: Secret
metadata:
  name: mirror-secret
  namespace: kuik-system
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {base64.b64encode(config.encode()).decode()}
"""
    )
    (tmp_path / "pod.yaml").write_text(
        f"""apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: team
spec:
  containers:
  - name: app
    image: {original.host}/team/app:v1
"""
    )
    (tmp_path / "config.yaml").write_text(
        f'registries:\n  "{mirror.host}":\n    caFile: {mirror.ca_file}\n'
    )
    return cluster


def _route(tmp_path: Path, *extra: str) -> Any:
    args = [
        "route",
        str(tmp_path / "pod.yaml"),
        "--cluster",
        f"dir:{tmp_path / 'cluster'}",
        "--config",
        str(tmp_path / "config.yaml"),
        *extra,
    ]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_route_check_shows_the_choice_and_the_rejections(
    tmp_path: Path, registry_factory: Any
) -> None:
    original = registry_factory()
    registry_auth = registry_factory(tls=True, username="mirror", password="mirror-pass")
    _write_cluster(tmp_path, original, registry_auth)
    plan = json.loads(_route(tmp_path, "--json").stdout)["containers"][0]["alternatives"]
    mirror_image, original_image = plan[0]["image"], plan[1]["image"]
    assert mirror_image.startswith(f"{registry_auth.host}/mirror/")

    # mirror missing, original present: the original is chosen, the mirror rejected as NotFound
    push_image(original, "team/app", "v1", synthetic_image("route-check"))
    checked = json.loads(_route(tmp_path, "--check", "--json").stdout)
    assert checked["mode"] == {"mode": "enforce", "source": "config webhook.mode"}
    first = checked["containers"][0]
    assert [a["status"] for a in first["alternatives"]] == ["NotFound", "Available"]
    assert first["alternatives"][0]["error"].startswith("image not found: ")
    assert first["chosen"] == original_image
    hosts = {h["host"]: h["up"] for h in json.loads(_route(tmp_path, "--check", "--json").stdout)[
        "registries"
    ]}  # fmt: skip
    assert hosts == {registry_auth.host: True, original.host: True}

    # mirror present (read with the CR's credential secret): it wins
    repository = mirror_image.split("/", 1)[1].rsplit(":", 1)[0]
    push_image(registry_auth, repository, "v1", synthetic_image("route-check"))
    text = _route(tmp_path, "--check")
    assert text.exit_code == 0, text.output
    mode, *lines = text.stdout.splitlines()
    assert mode.startswith("mode: enforce (config webhook.mode)")
    assert lines[1].split()[-3:] == ["Available", "<-", "chosen"]
    assert lines[2].endswith("Available (not needed)")

    # nothing available anywhere: every rejection says why
    original.kill()
    registry_auth.kill()
    _, *lines = _route(tmp_path, "--check").stdout.splitlines()
    assert "Unreachable: registry unreachable: " in lines[1]
    assert "Unreachable: registry unreachable: " in lines[2]
    assert lines[3] == "  no alternative is available: the image is left as it is"
    assert lines[4] == "registry health (GET /v2/, as the services' prober):"
    assert all(" down: GET " in line and "connection failed" in line for line in lines[5:7])
