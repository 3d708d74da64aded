"""The RBAC each service gets from the chart, for tests that run kuik under it against the API
fake (`FakeApiServer.grant`): what the chart renders is what the code is held to."""

from __future__ import annotations

import functools
from typing import Any

from tests.chart.conftest import CHART_DIR, ChartRenderer

__all__ = ["SERVICES", "ServiceRole", "chart_role"]

SERVICES = ("webhook", "replicator", "monitor")
JSON = dict[str, Any]


class ServiceRole:
    """A service's ServiceAccount (as an API user name) and its ClusterRole's rules."""

    def __init__(self, user: str, rules: list[JSON]) -> None:
        self.user, self.rules = user, rules


@functools.cache
def _roles() -> dict[str, ServiceRole]:
    rendered = ChartRenderer(CHART_DIR).render()
    roles = {}
    for service in SERVICES:
        [subject] = rendered.component("ClusterRoleBinding", service)["subjects"]
        user = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
        roles[service] = ServiceRole(user, rendered.component("ClusterRole", service)["rules"])
    return roles


def chart_role(service: str) -> ServiceRole:
    """`service`'s role as the chart renders it with default values (rendered once)."""
    return _roles()[service]
