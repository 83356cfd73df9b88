"""Turn pydantic validation errors into problems a person can act on.

Every problem names the path exactly as the user wrote it (camelCase keys,
``[i]`` for list items), the value that was given, and what is accepted.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any

import pydantic
from pydantic.alias_generators import to_camel

from gke_inference.core.errors import Problem, show_value


class StrictModel(pydantic.BaseModel):
    """Base for every settings and spec model: camelCase keys, unknown keys rejected,
    numbers finite (``.inf`` and ``.nan`` are no one's intent)."""

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )


def format_path(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out and not out.endswith(":") else str(part)
    return out or "(top level)"


def _model_at(model: type[pydantic.BaseModel], loc: Sequence[int | str]) -> Any:
    """The model class found by walking ``loc`` (aliases) from ``model``, if any."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = typing.get_args(current)
            current = args[0] if args else None
            continue
        if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
            found = None
            for name, field in current.model_fields.items():
                if part in (name, field.alias):
                    found = field.annotation
                    break
            current = found
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    return _unwrap(current)


def _unwrap(annotation: Any) -> Any:
    """Strip Optional[...] / Annotated[...] so the real model or container shows."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        real = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(real) == 1:
            return _unwrap(real[0])
    return annotation


def accepted_keys(model: type[pydantic.BaseModel], loc: Sequence[int | str]) -> list[str]:
    parent = _model_at(model, loc)
    if isinstance(parent, type) and issubclass(parent, pydantic.BaseModel):
        return sorted(f.alias or n for n, f in parent.model_fields.items())
    return []


# Friendly words for the regular expressions used in models, keyed by pattern.
PATTERN_HELP: dict[str, str] = {}


def repeated(values: Sequence[str]) -> str:
    """The values listed more than once, sorted and comma-joined ("" when none)."""
    return ", ".join(sorted({v for v in values if values.count(v) > 1}))


def describe_pattern(pattern: str, help_text: str) -> str:
    """Register what a pattern means for people; returns the pattern for use in Field()."""
    PATTERN_HELP[pattern] = help_text
    return pattern


def _show(value: Any) -> str:
    return show_value(value, limit=80)


def problems_from(
    error: pydantic.ValidationError, model: type[pydantic.BaseModel], prefix: str = ""
) -> list[Problem]:
    problems: list[Problem] = []
    for item in error.errors(include_url=False):
        loc = list(item["loc"])
        kind = item["type"]
        if kind == "missing":
            message = "is required but not set"
        elif kind == "extra_forbidden":
            keys = accepted_keys(model, loc[:-1])
            message = "is not a known setting" + (f"; accepted: {', '.join(keys)}" if keys else "")
        elif (
            kind == "string_pattern_mismatch" and item.get("ctx", {}).get("pattern") in PATTERN_HELP
        ):
            message = (
                f"must be {PATTERN_HELP[item['ctx']['pattern']]} (got {_show(item.get('input'))})"
            )
        else:
            msg = item["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
            value = item.get("input")
            # A section's own rule (a model validator) names what it checked; echoing
            # the whole section back would only bury the message.
            message = msg if isinstance(value, dict) else f"{msg} (got {_show(value)})"
        problems.append(Problem(format_path(prefix, loc), message))
    return problems


# The Pulumi Service's rule for a stack owner (user or organization), which the
# CLI applies to the first part of ``<org>/<project>/<stack>``; the DIY
# backends' literal "organization" passes it too.
PULUMI_ORGANIZATION = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{1,38}[a-zA-Z0-9]$")
PULUMI_ORGANIZATION_HELP = (
    "a Pulumi organization name: 3 to 40 letters, digits, hyphens and underscores, "
    "starting and ending with a letter or digit"
)


def pulumi_organization_problem(value: str) -> str | None:
    """Why ``value`` cannot be a Pulumi organization name (None if it can)."""
    if PULUMI_ORGANIZATION.fullmatch(value):
        return None
    return f"must be {PULUMI_ORGANIZATION_HELP} (got {show_value(value, limit=80)})"
