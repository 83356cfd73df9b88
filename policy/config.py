"""The pack's configuration: parameters, their schema and defaults, and config resolution.

One format serves both paths. ``pulumi preview --policy-pack policy
--policy-pack-config FILE`` and ``gke-inference plan --policy-config FILE`` read
the same JSON::

    {
      "all": "mandatory",                                  # optional: level for every policy
      "gke-secrets-encryption-kms-enabled": {"prodStacks": ["prod", "prod-eu"]},
      "k8s-image-from-artifact-registry": "disabled"       # a bare level is fine too
    }

``resolve_pack_config`` mirrors the Pulumi CLI (``ReconcilePolicyPackConfig``):
schema defaults first, then the pack's ``initial_config``, then the user's file;
an ``"all"`` level applies before the per-policy entries of the same layer; the
result is validated against each policy's ``PolicyConfigSchema``. Rules read
their parameters through :func:`param`, which falls back to the schema default,
so a rule behaves the same when the CLI already filled the defaults in and when
a test passes no config at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import EnforcementLevel, Policy, PolicyConfigSchema

from gke_inference.core import safe_yaml

PACK_NAME = "gke-inference-baseline"
#: Level of a policy that does not set its own (none of ours relies on it).
PACK_ENFORCEMENT = EnforcementLevel.MANDATORY

#: Every parameter any rule understands, as JSON schema with its default.
PARAMETERS: dict[str, dict[str, Any]] = {
    "prodStacks": {
        "type": "array",
        "items": {"type": "string"},
        "default": ["prod"],
        "description": "Stack names treated as production (stack = first URN segment).",
    },
    "allowedRegistries": {
        "type": "array",
        "items": {"type": "string"},
        # Google-maintained GKE system images (gcr.io/gke-release) are exempt
        # from Binary Authorization's project policy too.
        "default": ["*-docker.pkg.dev/", "gcr.io/gke-release/"],
        "description": (
            "Image prefixes a workload should pull from; '*' matches within one path "
            "segment, so '*-docker.pkg.dev/' means any Artifact Registry location."
        ),
    },
    "maxRotationDays": {
        "type": "integer",
        "minimum": 1,
        "default": 90,
        "description": "Longest allowed automatic rotation period of a Cloud KMS key, in days.",
    },
    "minPublicPrefixLength": {
        "type": "integer",
        "minimum": 0,
        "maximum": 32,
        "default": 16,
        "description": (
            "The widest public range a cluster's authorized networks may open together, "
            "as a prefix length (their public addresses are counted, overlaps once)."
        ),
    },
    "allowPublicLoadBalancer": {
        "type": "boolean",
        "default": False,
        "description": "Allow Services of type LoadBalancer without the internal-LB annotation.",
    },
    "requiredLabels": {
        "type": "array",
        "items": {"type": "string"},
        "default": ["environment"],
        "description": "Labels every labelable Google Cloud resource must carry.",
    },
}

LEVELS = {level.value: level for level in EnforcementLevel}


def schema(*keys: str) -> PolicyConfigSchema:
    """The config schema of a policy that reads ``keys``."""
    return PolicyConfigSchema(properties={k: dict(PARAMETERS[k]) for k in keys})


def param(args: Any, key: str) -> Any:
    """A parameter from the policy's config, or its schema default."""
    config = args.get_config() or {}
    if key in config and config[key] is not None:
        return config[key]
    return PARAMETERS[key]["default"]


def stack_of(urn: str) -> str:
    """The stack name of a URN ``urn:pulumi:<stack>::<project>::<type>::<name>``."""
    if not urn.startswith("urn:pulumi:"):
        return ""
    return urn[len("urn:pulumi:") :].split("::", 1)[0]


def is_prod(args: Any, urn: str) -> bool:
    return stack_of(urn) in set(param(args, "prodStacks"))


# --------------------------------------------------------------------------- resolution


class PolicyConfigError(ValueError):
    """The pack config cannot be used; ``problems`` says where and why."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@dataclass
class ResolvedPolicyConfig:
    level: EnforcementLevel
    properties: dict[str, Any] = field(default_factory=dict)


def _level(value: Any, where: str, problems: list[str]) -> EnforcementLevel | None:
    if isinstance(value, EnforcementLevel):
        return value
    if isinstance(value, str) and value in LEVELS:
        return LEVELS[value]
    problems.append(f"{where}: enforcement level must be one of {sorted(LEVELS)}, got {value!r}")
    return None


def _apply(
    result: dict[str, ResolvedPolicyConfig],
    layer: Mapping[str, Any],
    where: str,
    problems: list[str],
) -> None:
    all_value = layer.get("all")
    if all_value is not None:
        raw = all_value.get("enforcementLevel") if isinstance(all_value, Mapping) else all_value
        level = _level(raw, f"{where}all", problems) if raw is not None else None
        if level is not None:
            for resolved in result.values():
                resolved.level = level
    for name, value in layer.items():
        if name == "all":
            continue
        if name not in result:
            problems.append(f"{where}{name}: no policy of that name in {PACK_NAME}")
            continue
        if isinstance(value, Mapping):
            for key, item in value.items():
                if key == "enforcementLevel":
                    level = _level(item, f"{where}{name}.enforcementLevel", problems)
                    if level is not None:
                        result[name].level = level
                else:
                    result[name].properties[key] = item
        else:
            level = _level(value, f"{where}{name}", problems)
            if level is not None:
                result[name].level = level


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "array": (list, tuple),
    "object": (dict,),
}


def _check_value(value: Any, spec: Mapping[str, Any], where: str, problems: list[str]) -> None:
    kind = spec.get("type")
    if kind:
        allowed = _JSON_TYPES[kind]
        bad_bool = isinstance(value, bool) and kind in ("integer", "number")
        if not isinstance(value, allowed) or bad_bool:
            problems.append(f"{where}: expected {kind}, got {json.dumps(value)}")
            return
    if "minimum" in spec and value < spec["minimum"]:
        problems.append(f"{where}: must be >= {spec['minimum']}, got {value}")
    if "enum" in spec and value not in spec["enum"]:
        problems.append(f"{where}: must be one of {spec['enum']}, got {value!r}")
    if kind == "array" and "items" in spec:
        for i, item in enumerate(value):
            _check_value(item, spec["items"], f"{where}[{i}]", problems)


def resolve_pack_config(
    policies: Sequence[Policy],
    user_config: Mapping[str, Any] | None = None,
    *,
    initial_config: Mapping[str, Any] | None = None,
    pack_level: EnforcementLevel = PACK_ENFORCEMENT,
    source: str = "policy config",
) -> dict[str, ResolvedPolicyConfig]:
    """Effective level and parameters of every policy, as the Pulumi CLI computes them."""
    result: dict[str, ResolvedPolicyConfig] = {}
    for policy in policies:
        defaults = {}
        if policy.config_schema is not None:
            defaults = {
                k: json.loads(json.dumps(v["default"]))
                for k, v in policy.config_schema.properties.items()
                if "default" in v
            }
        level = policy.enforcement_level or pack_level
        result[policy.name] = ResolvedPolicyConfig(level, defaults)
    problems: list[str] = []
    if initial_config:
        _apply(result, initial_config, "initial_config.", problems)
    if user_config:
        if not isinstance(user_config, Mapping):
            raise PolicyConfigError(source, ["the top level must be a JSON object"])
        _apply(result, user_config, "", problems)
    for policy in policies:
        props = result[policy.name].properties
        known = policy.config_schema.properties if policy.config_schema else {}
        for key, value in props.items():
            if key not in known:
                accepted = ", ".join(sorted(known)) or "only enforcementLevel"
                problems.append(f"{policy.name}.{key}: unknown property (accepted: {accepted})")
                continue
            _check_value(value, known[key], f"{policy.name}.{key}", problems)
        for key in (policy.config_schema.required or []) if policy.config_schema else []:
            if key not in props:
                problems.append(f"{policy.name}.{key}: required")
    if problems:
        raise PolicyConfigError(source, problems)
    return result


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--policy-pack-config`` JSON file; errors name the file.

    The file must be UTF-8 JSON nested no deeper than ``safe_yaml.MAX_DEPTH``.
    """
    where = str(path)
    try:
        text = safe_yaml.read_text(path)
    except OSError as exc:
        raise PolicyConfigError(where, [f"cannot read: {exc.strerror or exc}"]) from None
    except safe_yaml.UnsafeInputError as exc:
        raise PolicyConfigError(where, [exc.detail]) from None
    try:
        data = safe_yaml.load_json(text)
    except safe_yaml.UnsafeInputError as exc:
        raise PolicyConfigError(where, [exc.detail]) from None
    except json.JSONDecodeError as exc:
        raise PolicyConfigError(where, [f"not JSON: {exc}"]) from None
    if not isinstance(data, dict):
        raise PolicyConfigError(where, ["the top level must be a JSON object"])
    return data


# --------------------------------------------------------------------------- matching


def registry_pattern(pattern: str) -> re.Pattern[str]:
    """A registry prefix pattern: '*' stays inside one path segment, the rest is literal."""
    parts = (re.escape(p) for p in pattern.split("*"))
    return re.compile("[^/]*".join(parts))


def image_allowed(image: str, patterns: Iterable[str]) -> bool:
    return any(registry_pattern(p).match(image) for p in patterns)
