"""Shared fixtures: plans of the shipped stacks, computed once per session.

Every plan runs the real ``__main__.py`` under its own event loop and mock
runtime (gke_inference.offline.recording.run_offline); caching only avoids running the
same stack twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gke_inference.automation.store import SQLStore
from gke_inference.core import stack_config
from gke_inference.offline.planning import plan_platform
from gke_inference.offline.recording import Plan
from tests.support.pinning import pinned_prod_config

REPO = Path(__file__).resolve().parents[1]
SHIPPED_STACKS = ("dev", "prod")

_cache: dict[tuple[str, tuple[str, ...]], Plan] = {}
_load_yaml = stack_config.load_yaml
_PROD_FILE = (REPO / "Pulumi.prod.yaml").resolve()
_pinned = {"on": True}


def _load_pinned(path: Path) -> dict[str, object]:
    data = _load_yaml(path)
    if _pinned["on"] and path.name == _PROD_FILE.name:
        return pinned_prod_config(data)
    return data


@pytest.fixture(autouse=True, scope="session")
def _pin_prod_images() -> Iterator[None]:
    """The shipped prod stack, planned as it is once pinned (tests/support/pinning.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stack_config, "load_yaml", _load_pinned)
        yield


@pytest.fixture
def unpinned_prod() -> Iterator[None]:
    """The shipped prod stack exactly as committed: no digests."""
    _pinned["on"] = False
    try:
        yield
    finally:
        _pinned["on"] = True


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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLStore]:
    """The service's SQLite store, in the test's own directory."""
    from gke_inference.automation.databases import open_store

    store = open_store(tmp_path / "service.db")
    yield store
    store.close()
