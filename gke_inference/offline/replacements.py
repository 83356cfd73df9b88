"""Which input changes make the engine replace a resource instead of updating it.

The facts live in ``data/replacements.json``: per resource type, the Pulumi
input paths that force a replacement, taken from the providers' own sources
(terraform-provider-google-beta ``ForceNew`` attributes behind pulumi-gcp,
pulumi-kubernetes ``forceNewProperties``); the file names the provider
versions and commits. Two kinds of rule:

- ``replaceOnChange``: any change of the value at the path, or anywhere under
  it, forces a replacement (``enableAutopilot``, ``spec.selector``);
- ``replaceOnCount``: adding or removing the nested block at the path (an
  object appearing or disappearing, a list changing length) forces it; its
  fields decide for themselves, as Terraform's SDK does not cascade a block's
  ``ForceNew`` into its attributes.

A path is camelCase segments joined by dots; ``[*]`` matches any list element.
Every Kubernetes type replaces on ``metadata.name`` and ``metadata.namespace``.
:func:`replacement_reasons` answers the question for one resource: the
changed paths, old inputs to new, that force its replacement.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).with_name("data") / "replacements.json"

Segment = str | int
Concrete = tuple[Segment, ...]

_WILDCARD = "*"
_IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_MISSING = object()


def parse_path(path: str) -> tuple[str, ...]:
    """``nodePools[*].nodeConfig`` -> ``("nodePools", "*", "nodeConfig")``."""
    segments: list[str] = []
    for part in path.split("."):
        name, *indexes = part.split("[")
        if name:
            segments.append(name)
        segments.extend(index.rstrip("]") for index in indexes)
    return tuple(segments)


def render_path(path: Concrete) -> str:
    """``("spec", "template", "spec", "containers", 0, "image")`` ->
    ``spec.template.spec.containers[0].image``; keys that are not identifiers are
    quoted as Pulumi shows them (``metadata.labels["app.kubernetes.io/name"]``)."""
    out = ""
    for segment in path:
        if isinstance(segment, int):
            out += f"[{segment}]"
        elif _IDENTIFIER.match(segment):
            out += f".{segment}" if out else segment
        else:
            out += f"[{json.dumps(segment)}]"
    return out


@dataclass(frozen=True)
class ReplaceRules:
    """The replacement rules of one resource type."""

    type: str
    on_change: tuple[tuple[str, ...], ...]
    on_count: tuple[tuple[str, ...], ...] = ()
    source: str = ""

    @property
    def paths(self) -> list[str]:
        """Every rule as a path string (``[*]`` for any element)."""
        return sorted(_render_pattern(p) for p in (*self.on_change, *self.on_count))


def _render_pattern(pattern: tuple[str, ...]) -> str:
    out = ""
    for segment in pattern:
        out += "[*]" if segment == _WILDCARD else (f".{segment}" if out else segment)
    return out


@functools.cache
def _table() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return data


def sources() -> dict[str, dict[str, str]]:
    """Where the facts come from: provider package, version, upstream and commit."""
    found: dict[str, dict[str, str]] = _table()["sources"]
    return found


def known_types() -> list[str]:
    """The resource types with their own rules (any ``kubernetes:`` type has the defaults)."""
    return sorted(_table()["resources"])


@functools.cache
def rules_for(type_: str) -> ReplaceRules:
    """The rules of ``type_``; a type without rules (a component, an unknown
    provider) never replaces because of its inputs."""
    table = _table()
    entry = table["resources"].get(type_)
    on_change: list[str] = []
    on_count: list[str] = []
    source = ""
    if type_.startswith("kubernetes:"):
        on_change.extend(table["kubernetesDefault"])
        source = "kubernetes"
    if entry is not None:
        on_change.extend(entry.get("replaceOnChange", []))
        on_count.extend(entry.get("replaceOnCount", []))
        source = entry.get("source", source)
    return ReplaceRules(
        type_,
        tuple(sorted({parse_path(p) for p in on_change})),
        tuple(sorted({parse_path(p) for p in on_count})),
        source,
    )


# --------------------------------------------------------------------------- diffs


def _leaves(value: Any, prefix: Concrete) -> Iterator[Concrete]:
    """Every leaf path of ``value`` (an empty object or list is a leaf too)."""
    if isinstance(value, dict) and value:
        for key, item in value.items():
            yield from _leaves(item, (*prefix, str(key)))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _leaves(item, (*prefix, index))
    else:
        yield prefix


def changed_paths(old: Any, new: Any, prefix: Concrete = ()) -> list[Concrete]:
    """The leaf paths whose values differ between ``old`` and ``new`` inputs.

    A key present on one side only counts as changed at every leaf under it.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[Concrete] = []
        for key in sorted(set(old) | set(new), key=str):
            a, b = old.get(key, _MISSING), new.get(key, _MISSING)
            if a is _MISSING:
                out.extend(_leaves(b, (*prefix, str(key))))
            elif b is _MISSING:
                out.extend(_leaves(a, (*prefix, str(key))))
            else:
                out.extend(changed_paths(a, b, (*prefix, str(key))))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for index in range(max(len(old), len(new))):
            if index >= len(old):
                out.extend(_leaves(new[index], (*prefix, index)))
            elif index >= len(new):
                out.extend(_leaves(old[index], (*prefix, index)))
            else:
                out.extend(changed_paths(old[index], new[index], (*prefix, index)))
        return out
    if old == new and type(old) is type(new):
        return []
    return [prefix] if prefix else list(_leaves(new, ()))


def _matches(pattern: tuple[str, ...], path: Concrete) -> bool:
    """Whether ``pattern`` is a prefix of ``path`` (``*`` matches any list index)."""
    if len(pattern) > len(path):
        return False
    for want, have in zip(pattern, path, strict=False):
        if want == _WILDCARD:
            if not isinstance(have, int):
                return False
        elif want != have:
            return False
    return True


def _select(value: Any, pattern: tuple[str, ...], prefix: Concrete = ()) -> Iterator[Concrete]:
    """The concrete paths in ``value`` that ``pattern`` names (wildcards expanded)."""
    if not pattern:
        yield prefix
        return
    head, rest = pattern[0], pattern[1:]
    if head == _WILDCARD:
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _select(item, rest, (*prefix, index))
    elif isinstance(value, dict) and head in value:
        yield from _select(value[head], rest, (*prefix, head))


def _get(value: Any, path: Concrete) -> Any:
    for segment in path:
        if isinstance(segment, int):
            if not isinstance(value, list) or segment >= len(value):
                return None
            value = value[segment]
        else:
            if not isinstance(value, dict) or segment not in value:
                return None
            value = value[segment]
    return value


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list):
        return len(value)
    return 1


def replacement_reasons(type_: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The input paths whose change, ``old`` inputs to ``new``, forces a replacement.

    Each reason is the rule's path with concrete list indexes
    (``enableAutopilot``, ``spec.template``, ``nodePools[0].nodeConfig``), the
    outermost one where rules nest; empty when the change (if any) is an
    in-place update.
    """
    rules = rules_for(type_)
    if not rules.on_change and not rules.on_count:
        return []
    reasons: set[Concrete] = set()
    changed = changed_paths(old, new)
    for pattern in rules.on_change:
        for path in changed:
            if _matches(pattern, path):
                reasons.add(path[: len(pattern)])
    for pattern in rules.on_count:
        for path in {*_select(old, pattern), *_select(new, pattern)}:
            if _count(_get(old, path)) != _count(_get(new, path)):
                reasons.add(path)
    # A reason under another one adds nothing (``nodeConfig`` covers ``nodeConfig.metadata``).
    kept = [p for p in reasons if not any(q != p and p[: len(q)] == q for q in reasons)]
    return sorted(render_path(p) for p in kept)
