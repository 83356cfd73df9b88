"""Read a stack's config the way the Pulumi CLI hands it to the program.

``Pulumi.yaml`` declares scalar keys with types and defaults; ``Pulumi.<stack>.yaml``
holds the values, structured ones as objects. ``--config PATH=VALUE`` overrides
use the path syntax of ``pulumi config set --path``.

YAML is read with :mod:`gke_inference.core.safe_yaml`, as Pulumi reads it:
timestamps stay text, and aliases, nesting and encoding are bounded.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml

from gke_inference.core import safe_yaml
from gke_inference.core.contract import PLATFORM_PROJECT
from gke_inference.core.errors import Problem, SettingsError, truncate

_PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def load_yaml(path: Path) -> dict[str, Any]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise SettingsError(f"Cannot read {path}", [Problem(str(path), "file not found")]) from None
    return copy.deepcopy(_load_yaml(path.resolve(), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=64)
def _load_yaml(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    """Parse once per file version (the key includes mtime and size)."""
    try:
        text = safe_yaml.read_text(path)
    except FileNotFoundError:
        raise SettingsError(f"Cannot read {path}", [Problem(str(path), "file not found")]) from None
    except OSError as exc:
        raise SettingsError(
            f"Cannot read {path}", [Problem(str(path), exc.strerror or str(exc))]
        ) from None
    except safe_yaml.UnsafeInputError as exc:
        raise SettingsError(f"Cannot read {path}", [Problem(str(path), exc.detail)]) from None
    try:
        data = safe_yaml.load_yaml(text) or {}
    except safe_yaml.UnsafeInputError as exc:
        raise SettingsError(f"Cannot parse {path}", [Problem(str(path), exc.detail)]) from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"Cannot parse {path}", [Problem(str(path), str(exc))]) from None
    if not isinstance(data, dict):
        raise SettingsError(f"Cannot use {path}", [Problem(str(path), "must be a YAML mapping")])
    return data


def project_name(project_dir: Path) -> str:
    return str(load_yaml(project_dir / "Pulumi.yaml")["name"])


def find_project_dir(start: Path | None = None) -> Path:
    """The folder holding the platform's Pulumi.yaml: cwd or a parent, else the checkout."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "Pulumi.yaml").exists() and project_name(candidate) == PLATFORM_PROJECT:
            return candidate
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "Pulumi.yaml").exists():
        return checkout
    raise SettingsError(
        "Cannot find the platform project",
        [Problem("Pulumi.yaml", f"no {PLATFORM_PROJECT} project above {here}; run from the repo")],
    )


def _full_key(key: str, namespace: str) -> str:
    return key if ":" in key else f"{namespace}:{key}"


def declared_defaults(project_dir: Path) -> dict[str, Any]:
    """Defaults from the ``config:`` schema of Pulumi.yaml, as the CLI applies them."""
    project = load_yaml(project_dir / "Pulumi.yaml")
    namespace = str(project["name"])
    out: dict[str, Any] = {}
    for key, decl in (project.get("config") or {}).items():
        if isinstance(decl, dict) and "default" in decl:
            out[_full_key(key, namespace)] = decl["default"]
        elif not isinstance(decl, dict):
            out[_full_key(key, namespace)] = decl
    return out


def parse_override(text: str, namespace: str) -> tuple[str, list[str | int], Any]:
    """``cluster.mode=autopilot`` -> ("gke-inference:cluster", ["mode"], "autopilot")."""
    if "=" not in text:
        raise SettingsError(
            "Invalid --config override",
            [Problem(text, "expected PATH=VALUE, e.g. cluster.mode=autopilot")],
        )
    path, raw_value = text.split("=", 1)
    ns = namespace
    if ":" in path:
        ns, path = path.split(":", 1)
    tokens: list[str | int] = []
    for match in _PATH_TOKEN.finditer(path):
        name, index = match.groups()
        tokens.append(int(index) if index is not None else name)
        if len(tokens) > safe_yaml.MAX_DEPTH:
            raise SettingsError(
                "Invalid --config override",
                [
                    Problem(
                        truncate(path, 80),
                        f"the path has more than {safe_yaml.MAX_DEPTH} segments; "
                        "accepted: a config path such as cluster.systemPool.maxNodesPerZone",
                    )
                ],
            )
    if not tokens or not isinstance(tokens[0], str):
        raise SettingsError(
            "Invalid --config override", [Problem(text, "the path must start with a key name")]
        )
    try:
        value = safe_yaml.load_yaml(raw_value) if raw_value != "" else ""
    except safe_yaml.UnsafeInputError as exc:
        raise SettingsError(
            "Invalid --config override", [Problem(truncate(path, 80), f"the value: {exc.detail}")]
        ) from None
    except yaml.YAMLError:
        value = raw_value
    return f"{ns}:{tokens[0]}", tokens[1:], value


def _set_path(root: Any, path: list[str | int], value: Any, label: str) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(root) if isinstance(root, list) else []
        if head > len(items):
            raise SettingsError(
                "Invalid --config override",
                [Problem(label, f"index {head} is past the end of a list of {len(items)}")],
            )
        if head == len(items):
            items.append(None)
        items[head] = _set_path(items[head], rest, value, label)
        return items
    mapping = dict(root) if isinstance(root, dict) else {}
    mapping[head] = _set_path(mapping.get(head), rest, value, label)
    return mapping


def load_stack_config(
    project_dir: Path, stack: str, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Full config map ``{"ns:key": value}`` with structured values as Python objects."""
    namespace = project_name(project_dir)
    stack_file = project_dir / f"Pulumi.{stack}.yaml"
    if not stack_file.exists():
        known = sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml")
        )
        raise SettingsError(
            f"Unknown stack {stack!r}",
            [Problem("--stack", f"no {stack_file.name}; accepted: {', '.join(known) or 'none'}")],
        )
    config = declared_defaults(project_dir)
    for key, value in (load_yaml(stack_file).get("config") or {}).items():
        config[_full_key(str(key), namespace)] = copy.deepcopy(value)
    for text in overrides or []:
        key, path, value = parse_override(text, namespace)
        config[key] = _set_path(config.get(key), path, value, text)
    return config


def to_engine_config(config: dict[str, Any]) -> dict[str, str]:
    """Values as the engine passes them: strings, structured ones as JSON text."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict | list):
            out[key] = json.dumps(value)
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        else:
            out[key] = "" if value is None else str(value)
    return out
