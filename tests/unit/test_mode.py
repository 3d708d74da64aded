"""kuikcore.mode: the config's mode, overridden per Namespace by its label."""

from __future__ import annotations

from pathlib import Path

import pytest

from kuikcore.config import Config, ConfigError, load_config
from kuikcore.mode import Mode, mode_for
from kuikcore.names import MODE_LABEL


@pytest.mark.parametrize("default", list(Mode))
def test_without_a_label_the_config_decides(default: Mode) -> None:
    for labels in (None, {}, {"team": "shop"}):
        choice = mode_for(default, labels)
        assert choice.mode is default
        assert choice.source == "config webhook.mode"
        assert choice.problem is None


@pytest.mark.parametrize(("default", "value"), [(Mode.ENFORCE, "audit"), (Mode.AUDIT, "enforce")])
def test_the_namespace_label_overrides_it(default: Mode, value: str) -> None:
    choice = mode_for(default, {MODE_LABEL: value})
    assert choice.mode is Mode(value)
    assert choice.source == f"namespace label {MODE_LABEL}={value}"


@pytest.mark.parametrize("value", ["Audit", "", "dry-run"])
def test_a_label_that_is_no_mode_is_ignored_and_said(value: str) -> None:
    choice = mode_for(Mode.AUDIT, {MODE_LABEL: value})
    assert choice.mode is Mode.AUDIT
    assert choice.problem is not None
    assert repr(value) in choice.problem


def test_config_key(tmp_path: Path) -> None:
    assert Config().webhook.mode is Mode.ENFORCE
    path = tmp_path / "c.yaml"
    path.write_text("webhook:\n  mode: audit\n")
    assert load_config(path).webhook.mode is Mode.AUDIT
    path.write_text("webhook:\n  mode: dryrun\n")
    with pytest.raises(ConfigError, match=r"webhook\.mode"):
        load_config(path)
