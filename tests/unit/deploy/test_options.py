"""The options bootstrap.sh and teardown.sh share (deploy/options.sh): --help, and anything
unknown refused before a call is made."""

from __future__ import annotations

import pytest

from tests.unit.deploy.conftest import Cloud, script


@pytest.mark.parametrize("name", ["bootstrap.sh", "teardown.sh"])
def test_help_prints_the_scripts_usage_and_calls_nothing(cloud: Cloud, name: str) -> None:
    result, calls = cloud.run(script(name), "--help")
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: deploy/{name} [--dry-run]")
    assert result.stderr == ""
    assert calls == []


@pytest.mark.parametrize("name", ["bootstrap.sh", "teardown.sh"])
def test_an_unknown_option_is_refused_with_the_usage_before_any_call(
    cloud: Cloud, name: str
) -> None:
    result, calls = cloud.run(script(name), "--dry-run", "--force")
    assert result.returncode == 2
    assert result.stderr.startswith(f"usage: deploy/{name} [--dry-run]")
    assert result.stdout == ""
    assert calls == []
