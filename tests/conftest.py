"""Shared fixtures: plans of the shipped stacks, computed once per session.

Every plan runs the real ``__main__.py`` under its own event loop and mock
runtime (gke_inference.offline.recording.run_offline); caching only avoids running the
same stack twice.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gke_inference.offline.planning import plan_platform
from gke_inference.offline.recording import Plan

REPO = Path(__file__).resolve().parents[1]
SHIPPED_STACKS = ("dev", "prod")

_cache: dict[tuple[str, tuple[str, ...]], Plan] = {}


def platform_plan(stack: str, *overrides: str) -> Plan:
    key = (stack, overrides)
    if key not in _cache:
        _cache[key] = plan_platform(stack, list(overrides), project_dir=REPO)
    return _cache[key]


@pytest.fixture
def plan_of() -> Callable[..., Plan]:
    return platform_plan


@pytest.fixture(
    params=[
        ("dev",),
        ("prod",),
        ("dev", "cluster.mode=autopilot"),
        ("prod", "cluster.mode=autopilot"),
    ],
    ids=["dev", "prod", "dev-autopilot", "prod-autopilot"],
)
def any_plan(request: pytest.FixtureRequest) -> Plan:
    stack, *overrides = request.param
    return platform_plan(stack, *overrides)
