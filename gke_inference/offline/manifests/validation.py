"""Strict validation of manifests against schemas (the rules: :func:`validate_manifests`).

``jsonschema`` and ``kubernetes-validate`` are imported only when validating;
CEL rules are evaluated by :mod:`gke_inference.offline.manifests.cel_rules`.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from gke_inference.offline.manifests.cel_rules import SchemaRules
from gke_inference.offline.manifests.crd_schemas import (
    CRD_SCHEMA_DIR,
    CRD_SCHEMA_PACKAGE,
    crd_schema_kinds,
    repo_crd_schemas,
)
from gke_inference.offline.manifests.kinds import (
    api_version_of,
    custom_scopes,
    group_version,
    is_builtin,
    is_cluster_scoped,
    kind_of,
    name_of,
    namespace_of,
    plan_crds,
    where,
)
from gke_inference.offline.manifests.objects import ManifestError, without_secrets

# jsonschema ships no type information; its validators are typed as this alias.
Validator = Any

#: Kubernetes minor whose OpenAPI schemas built-in kinds are validated against.
#: kubernetes-validate 1.37 ships 1.25 to 1.37; 1.33 is the GKE minor the
#: platform targets (regular channel).
KUBERNETES_VERSION = "1.33"

_K8S_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_MAX_MESSAGE = 300


@dataclass(frozen=True)
class ManifestProblem:
    """One way a manifest breaks its schema (or has no schema)."""

    kind: str
    name: str
    path: str
    message: str
    namespace: str = ""
    api_version: str = ""

    def render(self) -> str:
        at = f" {self.path}:" if self.path else ":"
        return f"  - {self.kind} {where(self.namespace, self.name)}{at} {self.message}"


def validate_manifests(objects: Sequence[Mapping[str, Any]]) -> list[ManifestProblem]:
    """Check every object strictly; return the problems (empty when all is well).

    * Built-in kinds: the strict OpenAPI schema of Kubernetes
      :data:`KUBERNETES_VERSION` from kubernetes-validate (unknown fields,
      wrong types, missing required fields, bad enum values).
    * Custom resources: the repo's schema for the kind (``crd-schemas/``),
      else the ``openAPIV3Schema`` of a CRD for it in ``objects``, made
      strict by :func:`_strict_openapi`; then, when the schema passes, the
      schema's CEL rules (``x-kubernetes-validations``, see
      :mod:`~gke_inference.offline.manifests.cel_rules`). Like the API server,
      which skips them after type, required and enum errors, the rules run
      only on an object its schema accepts: they assume its types.
    * A kind with no schema at all is a problem (never a pass) that names the
      kind and the schemas that exist.
    * Also: a namespace on a cluster-scoped object, and two objects with the
      same apiVersion, kind, namespace and name.

    Masked secret values are left out of the check: their real type is unknown.
    Raises :class:`ManifestError` if kubernetes-validate is not installed.
    """
    context = _Context(plan_schemas=_plan_crd_schemas(objects), scopes=custom_scopes(objects))
    problems: list[ManifestProblem] = []
    for obj in objects:
        problems.extend(
            ManifestProblem(
                kind=kind_of(obj),
                name=name_of(obj),
                path=path,
                message=message,
                namespace=namespace_of(obj),
                api_version=api_version_of(obj),
            )
            for path, message in _check_object(obj, context)
        )
    return problems


@dataclass
class _Context:
    plan_schemas: Mapping[tuple[str, str, str], dict[str, Any]]
    scopes: Mapping[tuple[str, str], str]
    seen: set[tuple[str, str, str, str]] = field(default_factory=set)
    plan_rules: dict[tuple[str, str, str], SchemaRules] = field(default_factory=dict)


def _check_object(obj: Mapping[str, Any], ctx: _Context) -> Iterator[tuple[str, str]]:
    kind = kind_of(obj)
    api_version = api_version_of(obj)
    if not kind or not api_version:
        yield "", "apiVersion and kind are required"
        return
    identity = (api_version, kind, namespace_of(obj), name_of(obj))
    if identity in ctx.seen:
        yield "metadata.name", "declared more than once (two resources manage this object)"
    ctx.seen.add(identity)
    if namespace_of(obj) and is_cluster_scoped(obj, ctx.scopes):
        yield "metadata.namespace", f"{kind} is cluster-scoped; remove the namespace"
    validator = _schema_validator(obj, ctx.plan_schemas)
    if validator is None:
        yield "", _no_schema_message(obj)
        return
    clean = without_secrets(obj)
    errors = sorted(validator.iter_errors(clean), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        yield from _explain(error)
    rules = None if errors else _schema_rules(obj, ctx)
    if rules is not None:
        for parts, message in rules.check(clean):
            yield _path(parts), _short(message)


def _schema_validator(
    obj: Mapping[str, Any], plan_schemas: Mapping[tuple[str, str, str], dict[str, Any]]
) -> Validator | None:
    gvk = (*group_version(obj), kind_of(obj))
    if is_builtin(obj):
        definition = _builtin_index().get(gvk)
        return None if definition is None else _builtin_validator(definition)
    if gvk in repo_crd_schemas():
        return _repo_crd_validator(gvk)
    if gvk in plan_schemas:
        return _validator(plan_schemas[gvk])
    return None


def _schema_rules(obj: Mapping[str, Any], ctx: _Context) -> SchemaRules | None:
    """The CEL rules of a custom resource's schema (built-in kinds have none here)."""
    if is_builtin(obj):
        return None
    gvk = (*group_version(obj), kind_of(obj))
    if gvk in repo_crd_schemas():
        return _repo_crd_rules(gvk)
    if gvk in ctx.plan_schemas:
        if gvk not in ctx.plan_rules:
            ctx.plan_rules[gvk] = SchemaRules(ctx.plan_schemas[gvk], _external_document)
        return ctx.plan_rules[gvk]
    return None


def _no_schema_message(obj: Mapping[str, Any]) -> str:
    kind = kind_of(obj)
    if is_builtin(obj):
        return (
            f"no schema for {kind} {api_version_of(obj)}: not a built-in kind of Kubernetes "
            f"{KUBERNETES_VERSION} (misspelled kind, or an API version removed or not yet served)"
        )
    return (
        f"no schema for {kind} {api_version_of(obj)}: add a JSON Schema for it to "
        f"{CRD_SCHEMA_PACKAGE}/{CRD_SCHEMA_DIR}/ or install its CRD in the same program; "
        f"custom resource schemas here: {', '.join(crd_schema_kinds()) or 'none'}"
    )


# --------------------------------------------------------------------------
# Schemas and validators


@lru_cache(maxsize=1)
def _kubernetes_definitions() -> dict[str, Any]:
    try:
        package = resources.files("kubernetes_validate")
    except ModuleNotFoundError as exc:
        raise ManifestError(
            "strict manifest validation needs kubernetes-validate and jsonschema "
            "(pip install 'gke-inference[dev]')"
        ) from exc
    schemas = package.joinpath("kubernetes-json-schema")
    folder = schemas.joinpath(f"v{KUBERNETES_VERSION}.0-local-strict")
    if not folder.is_dir():
        have = sorted(
            e.name.removeprefix("v").removesuffix(".0-local-strict")
            for e in schemas.iterdir()
            if e.name.endswith("-local-strict")
        )
        raise ManifestError(
            f"kubernetes-validate has no strict schemas for Kubernetes {KUBERNETES_VERSION} "
            f"(it has {', '.join(have)})"
        )
    definitions: dict[str, Any] = json.loads(
        folder.joinpath("_definitions.json").read_text(encoding="utf-8")
    )
    return definitions


@lru_cache(maxsize=1)
def _builtin_index() -> dict[tuple[str, str, str], str]:
    """(group, version, kind) -> name of its definition in the Kubernetes schemas."""
    index: dict[tuple[str, str, str], str] = {}
    for name, definition in _kubernetes_definitions()["$defs"].items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            index.setdefault((gvk["group"], gvk["version"], gvk["kind"]), name)
    return index


@lru_cache(maxsize=1)
def _registry() -> Any:
    from referencing import Registry, Resource

    repo_schemas = {crd.file: crd.schema for crd in repo_crd_schemas().values()}
    resources_ = [
        Resource.from_contents(_kubernetes_definitions()),
        *(Resource.from_contents(s) for s in repo_schemas.values()),
    ]
    return Registry().with_resources((str(r.id()), r) for r in resources_ if r.id())


def _validator(schema: Mapping[str, Any]) -> Validator:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    validator: Validator = Draft202012Validator(schema, registry=_registry())
    return validator


def _definition_ref(definition: str) -> dict[str, str]:
    return {"$ref": f"{_K8S_DEFINITIONS_ID}#/$defs/{definition}"}


@lru_cache(maxsize=512)
def _builtin_validator(definition: str) -> Validator:
    return _validator(_definition_ref(definition))


@lru_cache(maxsize=64)
def _repo_crd_validator(gvk: tuple[str, str, str]) -> Validator:
    return _validator(repo_crd_schemas()[gvk].schema)


def _external_document(document_id: str) -> Mapping[str, Any] | None:
    """A document the repo's schemas ``$ref`` into: the Kubernetes definitions."""
    return _kubernetes_definitions() if document_id == _K8S_DEFINITIONS_ID else None


@lru_cache(maxsize=64)
def _repo_crd_rules(gvk: tuple[str, str, str]) -> SchemaRules:
    return SchemaRules(repo_crd_schemas()[gvk].schema, _external_document)


def crd_rule_errors() -> dict[str, list[str]]:
    """File name -> the CEL rules of that repo schema that cannot be evaluated (should be none)."""
    files = {crd.file: gvk for gvk, crd in repo_crd_schemas().items()}
    return {name: _repo_crd_rules(gvk).compile_errors() for name, gvk in sorted(files.items())}


def _plan_crd_schemas(
    objects: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """(group, version, kind) -> strict schema, for every CRD version in ``objects``."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for group, kind, spec in plan_crds(objects):
        for version in spec.get("versions") or []:
            schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or None
            if not isinstance(schema, dict):
                continue
            strict = _strict_openapi(schema)
            props = strict.setdefault("properties", {})
            props.setdefault(
                "metadata", _definition_ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")
            )
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            found[(group, str(version.get("name")), kind)] = strict
    return found


def _strict_openapi(schema: Any) -> Any:
    """A CRD's openAPIV3Schema as strict JSON Schema: unknown fields become errors.

    The API server prunes unknown fields of structural schemas (and kubectl's
    strict field validation rejects them); ``additionalProperties: false`` on
    every object with ``properties`` says the same to jsonschema. ``nullable``
    becomes a ``null`` type; ``x-kubernetes-int-or-string`` an integer-or-string.
    """
    if isinstance(schema, list):
        return [_strict_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict_openapi(v) for k, v in schema.items()}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if schema.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


# --------------------------------------------------------------------------
# Problem messages


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _not_of_type(instance: Any, types: Iterable[str]) -> str:
    wanted = " or ".join(t for t in types if t != "null")
    return f"{_short(repr(instance))} is not of type {wanted}"


def _type_names(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _explain(error: Any) -> Iterator[tuple[str, str]]:
    """(path, message) pairs for one jsonschema error, unknown fields one by one."""
    at = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        schema = error.schema if isinstance(error.schema, dict) else {}
        known = list((schema.get("properties") or {}).keys())
        patterns = list((schema.get("patternProperties") or {}).keys())
        extras = [
            key
            for key in error.instance
            if key not in known and not any(re.search(p, key) for p in patterns)
        ]
        for key in extras or ["?"]:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            yield _path([*at, key]), f"unknown field {key!r}{hint}"
        return
    if error.validator in ("oneOf", "anyOf") and error.context:
        types = {
            t
            for sub in error.context
            if sub.validator == "type"
            for t in _type_names(sub.validator_value)
            if t != "null"
        }
        if types:
            yield _path(at), _not_of_type(error.instance, sorted(types))
            return
    if error.validator == "type":
        yield _path(at), _not_of_type(error.instance, _type_names(error.validator_value))
        return
    yield _path(at), _short(error.message)
