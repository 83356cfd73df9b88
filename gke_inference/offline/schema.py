"""Recorded inputs with the types the provider schema declares.

The mock runtime hands every number over as a float (protobuf ``Value`` has
one number type), so a recorded ``initialNodeCount`` reads ``1.0``. The
provider SDKs say which properties are integers: every resource has a typed
``<Resource>Args`` class whose property getters are annotated
``pulumi.Input[int]`` (nested input types likewise), so a number becomes an
``int`` exactly where the schema says integer, recursively through lists,
maps and nested input types, never by guessing from ``.0``. A custom
resource (ComputeClass, Gateway, ...) has no SDK class: its schema in
``crd-schemas/`` (``"type": "integer"``) says the same. Types neither
describes (components, providers) are left as recorded.
"""

from __future__ import annotations

import collections.abc
import functools
import importlib
import types
import typing
from typing import Any

from gke_inference.core import sdk_internals as sdk

# Provider package of a type token's first segment.
_PACKAGES = {"gcp": "pulumi_gcp", "kubernetes": "pulumi_kubernetes", "random": "pulumi_random"}
_SEQUENCES = (list, collections.abc.Sequence, typing.Sequence)
_MAPPINGS = (dict, collections.abc.Mapping, typing.Mapping)


def _module_name(package: str, token: str) -> str | None:
    """``gcp:container/nodePool:NodePool`` -> ``pulumi_gcp.container``;
    ``kubernetes:apps/v1:Deployment`` -> ``pulumi_kubernetes.apps.v1``."""
    pkg, _, rest = token.partition(":")
    module, _, _ = rest.rpartition(":")
    if pkg == "kubernetes":
        group, _, version = module.partition("/")
        # Built-in API groups only (apps, core, rbac.authorization.k8s.io, ...): a CRD's
        # group (cloud.google.com, gateway.networking.k8s.io) has no SDK class.
        if "." in group and not group.endswith(".k8s.io"):
            return None
        name = group.split(".", 1)[0]
        return f"{package}.{name}.{version}" if version else None
    return f"{package}.{module.split('/', 1)[0]}" if module else None


@functools.cache
def args_class(token: str) -> type | None:
    """The SDK's ``<Resource>Args`` input type of a resource type token, if it has one."""
    package = _PACKAGES.get(token.split(":", 1)[0])
    module_name = _module_name(package, token) if package else None
    if module_name is None:
        return None
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, f"{token.rsplit(':', 1)[-1]}Args", None)
    return cls if sdk.is_input_type(cls) else None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    try:
        return sdk.input_property_hints(cls)
    except (NameError, TypeError, AttributeError):  # an annotation that does not resolve
        return {}


def _alternatives(hint: Any) -> list[Any]:
    """The plain types a value of ``hint`` may have: ``Input[T]``, ``Optional[T]`` and
    awaitables/outputs unwrapped."""
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        found: list[Any] = []
        for arg in typing.get_args(hint):
            found += _alternatives(arg)
        return found
    if hint is type(None) or origin is collections.abc.Awaitable:
        return []
    if origin is not None and getattr(origin, "__name__", "") == "Output":
        return []
    return [hint]


def conform(value: Any, hint: Any) -> Any:
    """``value`` with every number the schema (``hint``) declares integer as an int."""
    if value is None or isinstance(value, str | bool):
        return value
    options = _alternatives(hint)
    if isinstance(value, float):
        if value.is_integer() and int in options and float not in options:
            return int(value)
        return value
    if isinstance(value, dict):
        for option in options:
            if sdk.is_input_type(option):
                fields = _hints(option)
                return {k: conform(v, fields[k]) if k in fields else v for k, v in value.items()}
        for option in options:
            if typing.get_origin(option) in _MAPPINGS:
                args = typing.get_args(option)
                item = args[1] if len(args) == 2 else Any
                return {k: conform(v, item) for k, v in value.items()}
        return value
    if isinstance(value, list):
        for option in options:
            if typing.get_origin(option) in _SEQUENCES:
                args = typing.get_args(option)
                item = args[0] if args else Any
                return [conform(v, item) for v in value]
        return value
    return value


def _crd_schema(token: str) -> dict[str, Any] | None:
    pkg, _, rest = token.partition(":")
    group_version, _, kind = rest.rpartition(":")
    group, _, version = group_version.partition("/")
    if pkg != "kubernetes" or not version:
        return None
    from gke_inference.offline.manifests.crd_schemas import repo_crd_schemas

    crd = repo_crd_schemas().get((group, version, kind))
    return crd.schema if crd else None


def _says_integer(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
        return True
    return bool(schema.get("x-kubernetes-int-or-string"))


def conform_json(value: Any, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """``value`` with every number a JSON Schema declares integer as an int.

    Follows local ``$ref`` (``#/$defs/...``) and ``allOf``/``anyOf``/``oneOf``;
    an external reference (ObjectMeta) is left alone."""
    if not isinstance(schema, dict) or depth > 64 or isinstance(value, str | bool):
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        if not ref.startswith("#/"):
            return value
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        value = conform_json(value, target, root, depth + 1)
    for combinator in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(combinator, []):
            value = conform_json(value, sub, root, depth + 1)
    if isinstance(value, float):
        return int(value) if value.is_integer() and _says_integer(schema) else value
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: conform_json(v, properties.get(k, extra), root, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list):
        return [conform_json(v, schema.get("items"), root, depth + 1) for v in value]
    return value


def typed_inputs(token: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """A resource's recorded inputs, integers where its provider (or CRD) schema says so."""
    cls = args_class(token)
    if cls is None:
        crd = _crd_schema(token)
        return conform_json(inputs, crd, crd) if crd else inputs
    fields = _hints(cls)
    return {k: conform(v, fields[k]) if k in fields else v for k, v in inputs.items()}


def sorted_maps(value: Any) -> Any:
    """``value`` with the keys of every map in sorted order (stable JSON for diffs)."""
    if isinstance(value, dict):
        return {k: sorted_maps(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_maps(v) for v in value]
    return value
