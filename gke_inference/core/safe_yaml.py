"""Read YAML and JSON written by people without letting a few bytes cost minutes.

Every file or value a person hands the CLI (workload specs, ``Pulumi.<env>.yaml``,
``--config PATH=VALUE``, policy configs, saved plans) is parsed here:

- text must be UTF-8 (:func:`decode`, :func:`read_text`): the error says where
  the first bad byte is;
- YAML aliases may not expand beyond :data:`MAX_ALIAS_NODES` nodes (a "billion
  laughs" document of a few hundred bytes expands to hundreds of millions of
  nodes), an alias may not contain itself, and a document may not nest deeper
  than :data:`MAX_DEPTH` (JSON too): the composed node graph is measured
  before anything is constructed, memoized per node, so measuring costs the
  size of the text, not of its expansion;
- YAML scalars that look like timestamps stay strings, as the Pulumi CLI reads
  them (Go's yaml keeps a timestamp untyped as its text), so the values and
  the types are the ones ``pulumi up`` hands the program; ``!!binary`` and
  ``!!set`` are refused (there is no JSON for them).

Errors are :class:`UnsafeInputError` (a ``ValueError``, not a ``yaml.YAMLError``):
each caller turns it into its own error with the file or flag it came from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

#: Deepest nesting of mappings and lists accepted in a document (a plan is ~13).
MAX_DEPTH = 64
#: Most nodes that YAML aliases may add to a document by repeating what they point to.
MAX_ALIAS_NODES = 10_000

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when present


class UnsafeInputError(ValueError):
    """The text cannot be parsed safely; ``detail`` says why, for a Problem."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


def decode(data: bytes) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark is dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnsafeInputError(
            f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def read_text(path: str | Path) -> str:
    """A file as UTF-8 text; OSError as usual, UnsafeInputError when not UTF-8."""
    return decode(Path(path).read_bytes())


# --------------------------------------------------------------------------- YAML


def _refuse(tag: str) -> Callable[[Any, yaml.Node], Any]:
    def construct(loader: Any, node: yaml.Node) -> Any:
        raise yaml.constructor.ConstructorError(
            None, None, f"{tag} values are not accepted (plain YAML only)", node.start_mark
        )

    return construct


class SafeLoader(_BaseLoader):  # type: ignore[misc]
    """The safe loader with Pulumi's scalar types: timestamps stay text."""


SafeLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", yaml.constructor.SafeConstructor.construct_yaml_str
)
SafeLoader.add_constructor("tag:yaml.org,2002:binary", _refuse("!!binary"))
SafeLoader.add_constructor("tag:yaml.org,2002:set", _refuse("!!set"))


def _node_children(node: Any) -> list[Any] | None:
    """The child nodes of a YAML collection node; None for a scalar."""
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return None


def _value_children(value: Any) -> list[Any] | None:
    """The items (keys and values) of a decoded dict or list; None for a scalar."""
    if isinstance(value, dict):
        return [part for pair in value.items() for part in pair]
    if isinstance(value, list | tuple):
        return list(value)
    return None


def _measure(root: Any, children: Callable[[Any], list[Any] | None]) -> tuple[int, int, int]:
    """``(expanded size, distinct size, depth)`` of a graph whose collections may be shared.

    Sizes count a collection and its scalars; depth counts nested collections
    (a scalar: 0). Iterative and memoized per collection, so a graph whose
    expansion is huge is measured in time linear in its distinct collections.
    A collection reached from itself raises UnsafeInputError.
    """
    if children(root) is None:
        return 1, 1, 0
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    distinct = 0
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        kids = children(node) or []
        nested = [k for k in kids if children(k) is not None]
        if done:
            own = 1 + len(kids) - len(nested)
            distinct += own
            sizes[key] = own + sum(sizes[id(k)] for k in nested)
            depths[key] = 1 + max((depths[id(k)] for k in nested), default=0)
            open_nodes.discard(key)
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for kid in nested:
            if id(kid) in open_nodes:
                raise UnsafeInputError("an alias refers to a node that contains it (a cycle)")
            if id(kid) not in sizes:
                stack.append((kid, False))
    return sizes[id(root)], distinct, depths[id(root)]


def _check_graph(root: Any, children: Callable[[Any], list[Any] | None]) -> None:
    expanded, distinct, depth = _measure(root, children)
    if expanded - distinct > MAX_ALIAS_NODES:
        raise UnsafeInputError(f"YAML aliases expand beyond {MAX_ALIAS_NODES} nodes")
    if depth > MAX_DEPTH:
        raise UnsafeInputError(f"nested more than {MAX_DEPTH} levels deep")


def load_yaml(text: str) -> Any:
    """One YAML document as plain data; UnsafeInputError or yaml.YAMLError if it cannot be."""
    loader = SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_graph(node, _node_children)
            return loader.construct_document(node)
        except RecursionError:
            raise UnsafeInputError(f"nested more than {MAX_DEPTH} levels deep") from None
        except yaml.MarkedYAMLError as exc:
            if "maximum nesting depth" in str(exc.problem):  # libyaml's own bound (1000)
                raise UnsafeInputError(f"nested more than {MAX_DEPTH} levels deep") from None
            raise
    finally:
        loader.dispose()


# --------------------------------------------------------------------------- JSON


def load_json(text: str) -> Any:
    """A JSON document; UnsafeInputError when too deep, json.JSONDecodeError when not JSON."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise UnsafeInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    check_depth(data)
    return data


def check_depth(value: Any) -> None:
    """Refuse decoded data (dicts and lists) nested deeper than :data:`MAX_DEPTH`."""
    _check_graph(value, _value_children)


def nesting_depth(value: Any) -> int:
    """How deep dicts and lists nest in ``value`` (a scalar: 0, ``{"a": 1}``: 1)."""
    return _measure(value, _value_children)[2]
