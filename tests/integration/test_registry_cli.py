"""`kuik copy` and `kuik check` against real registries (click's runner, the real client)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kuik_testing.images import push_image, synthetic_image, synthetic_index
from kuik_testing.registry import RegistryServer
from kuikcore.cli import main
from tests.integration.test_registry_copy import skopeo_raw


def kuik(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_copy_all_summary_and_byte_identical_manifests(
    registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    index = synthetic_index("cli-all")
    digest = push_image(registry, "cli/all", "v1", index)
    result = kuik("copy", f"{registry.host}/cli/all:v1", f"{destination.host}/m/all:v1", "--all")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert re.fullmatch(
        rf"copied \S+ -> \S+ digest={digest} platforms=linux/amd64,linux/arm64/v8 "
        rf"bytes={sum(b.size for b in index.blobs)} in [0-9.]+s",
        line,
    ), line
    assert skopeo_raw(f"{destination.host}/m/all:v1") == index.manifest_bytes
    for child in index.children:
        assert skopeo_raw(f"{destination.host}/m/all@{child.digest}") == child.manifest_bytes


def test_copy_platform_json_and_bad_platform(
    registry: RegistryServer, registry_factory: Any
) -> None:
    destination = registry_factory()
    push_image(registry, "cli/plat", "v1", synthetic_index("cli-plat"))
    src, dst = f"{registry.host}/cli/plat:v1", f"{destination.host}/m/plat:v1"
    result = kuik("copy", src, dst, "--platform", "linux/amd64", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["platforms"] == ["linux/amd64"]
    assert doc["blobsCopied"] == 3
    bad = kuik("copy", src, dst, "--platform", "linux")
    assert bad.exit_code == 2
    assert "invalid platform 'linux'" in bad.output
    none = kuik("copy", src, dst, "--platform", "linux/s390x")
    assert none.exit_code == 1
    assert "none of the configured platforms" in none.output
    both = kuik("copy", src, dst, "--platform", "linux/amd64", "--all")
    assert both.exit_code == 2


def test_copy_to_tls_basic_auth_registry_with_config_and_authfile(
    registry: RegistryServer, registry_auth: RegistryServer, tmp_path: Path
) -> None:
    push_image(registry, "cli/auth", "v1", synthetic_image("cli-auth"))
    config = tmp_path / "config.yaml"
    config.write_text(
        f'registries:\n  "{registry_auth.host}":\n    caFile: {registry_auth.ca_file}\n'
    )
    src, dst = f"{registry.host}/cli/auth:v1", f"{registry_auth.host}/m/auth:v1"
    denied = kuik("copy", src, dst, "--config", str(config))
    assert denied.exit_code == 1
    assert "HTTP 401" in denied.output
    secret = f"{registry_auth.username}:{registry_auth.password}"
    ok = kuik("copy", src, dst, "--config", str(config), "--dest-creds", secret)
    assert ok.exit_code == 0, ok.output
    assert str(registry_auth.password) not in ok.output
    authfile = tmp_path / "auth.json"
    encoded = base64.b64encode(secret.encode()).decode()
    authfile.write_text(json.dumps({"auths": {registry_auth.host: {"auth": encoded}}}))
    checked = kuik("check", dst, "--config", str(config), "--authfile", str(authfile), "--json")
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.output)["items"][0]["status"] == "Available"


def test_check_prints_one_status_per_image(registry: RegistryServer) -> None:
    digest = push_image(registry, "cli/check", "v1", synthetic_image("cli-check"))
    present, absent = f"{registry.host}/cli/check:v1", f"{registry.host}/cli/check:v2"
    result = kuik("check", present, absent, "--json", "--resolve-digest")
    assert result.exit_code == 1
    items = json.loads(result.output)["items"]
    assert [(i["image"], i["status"]) for i in items] == [
        (present, "Available"),
        (absent, "NotFound"),
    ]
    assert items[0]["digest"] == digest
    assert items[1]["error"].startswith("image not found: ")
    # the host's health, probed as the services' prober does, is shown beside the checks
    [health] = json.loads(result.output)["registries"]
    assert (health["host"], health["up"], health["error"]) == (registry.host, True, None)
    text = kuik("check", present)
    assert text.exit_code == 0
    lines = text.output.splitlines()
    assert lines[0].split() == [present, "Available", digest]
    assert lines[1] == "registry health (GET /v2/, as the services' prober):"
    assert lines[2].split()[:2] == [registry.host, "up"]
    invalid = kuik("check", "Not/A:Valid:Ref")
    assert invalid.exit_code == 2
