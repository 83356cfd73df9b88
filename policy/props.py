"""Small readers for engine-shaped props.

Under ``pulumi preview`` props arrive wrapped in the SDK's unknown-checking
proxies (``Mapping``/``Sequence`` subclasses, not ``dict``/``list``); offline they
are plain JSON. Secrets are ``"[secret]"`` offline and wrapped values under the
CLI. Everything here accepts all of those and never raises on odd shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

EMPTY: Mapping[str, Any] = {}


def obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else EMPTY


def items(value: Any) -> list[Any]:
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def get(value: Any, *path: str) -> Any:
    """``get(props, "a", "b")`` is ``props["a"]["b"]`` or None when any step is missing."""
    current = value
    for key in path:
        if not isinstance(current, Mapping) or key not in current:
            return None
        current = current[key]
    return current


def truthy(value: Any) -> bool:
    """True for ``True`` and the strings Kubernetes/GKE use for it."""
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return value is True


def falsy(value: Any) -> bool:
    """Explicitly false (not merely missing)."""
    if isinstance(value, str):
        return value.strip().lower() == "false"
    return value is False


def number(value: Any) -> float | None:
    """Numbers arrive as floats from the engine and as strings in quantities."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def short_type(resource_type: str) -> str:
    """``gcp:container/cluster:Cluster`` -> ``Cluster``."""
    return resource_type.rsplit(":", 1)[-1]
