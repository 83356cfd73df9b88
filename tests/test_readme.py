"""The README says what the code does: generated sections, settings keys, counts, links.

The presets, architecture, policy and resource-count sections are regenerated
from the code (``scripts/readme_sections.py``) and compared with the text
between their markers; the settings table is hand-written (its notes say
why), so its keys are checked against the settings model both ways.
"""

from __future__ import annotations

import re
import runpy
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest

from gke_inference.core.settings import PlatformSettings
from gke_inference.core.validation import StrictModel
from gke_inference.offline.recording import Plan
from tests.support.examples import EXAMPLE_STACKS

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
SECTIONS: dict[str, Any] = runpy.run_path(str(REPO / "scripts" / "readme_sections.py"))

FIX = "run `.venv/bin/python scripts/readme_sections.py --write` and review the diff"


def readme() -> str:
    return README.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", ["presets", "architecture", "policies"])
def test_generated_section_matches_the_code(name: str) -> None:
    current = SECTIONS["readme_section"](readme(), name)
    assert current is not None, f"README.md lost the <!-- {name}:begin/end --> markers"
    assert current == SECTIONS["SECTIONS"][name](), f"README section {name} is stale: {FIX}"


def counts(plan_of: Callable[..., Plan]) -> dict[str, tuple[int, int]]:
    out = {}
    for stack in SECTIONS["SHIPPED_STACKS"]:
        plan = plan_of(stack)
        out[stack] = (len(plan.resources), sum(1 for r in plan.resources if r.custom))
    return out


def test_resource_counts_section_matches_the_plans(plan_of: Callable[..., Plan]) -> None:
    current = SECTIONS["readme_section"](readme(), "resource-counts")
    assert current is not None
    expected = SECTIONS["resource_counts_text"](counts(plan_of))
    assert current == expected, f"README resource counts are stale: {FIX}"


def test_every_resource_count_in_the_docs_is_the_plans(plan_of: Callable[..., Plan]) -> None:
    """Any "`dev` ... (N resources" or "N resources in `prod`" elsewhere agrees too."""
    actual = counts(plan_of)
    patterns = [
        re.compile(r"`(?P<stack>dev|prod)`[^|\n]{0,60}?\b(?P<n>\d+) resources"),
        re.compile(r"\b(?P<n>\d+) resources[^|\n]{0,20}?`(?P<stack>dev|prod)`"),
    ]
    for path in (README, *DOCS):
        for pattern in patterns:
            for match in pattern.finditer(path.read_text(encoding="utf-8")):
                total, custom = actual[match["stack"]]
                assert int(match["n"]) in (total, custom), (
                    f"{path.name}: {match[0]!r} but the {match['stack']} plan has {total} "
                    f"resources ({custom} cloud/cluster resources)"
                )


# --------------------------------------------------------------------------- settings table


def _settings_rows() -> list[str]:
    text = readme()
    section = text[text.index("\n## Settings\n") :]
    section = section[: section.index("\n## ", 1)]
    return [line for line in section.splitlines() if line.startswith("| `")]


def table_keys() -> set[str]:
    """Key column: ``a.b`` / ``c`` / ``d`` means a.b, a.c and a.d."""
    keys: set[str] = set()
    for row in _settings_rows():
        names = re.findall(r"`([^`]+)`", row.split("|")[1])
        first = names[0]
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        keys.add(first)
        keys.update(parent + name for name in names[1:])
    return keys


def _model_of(annotation: Any) -> type[StrictModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, StrictModel):
            return candidate
    return None


def model_keys() -> set[str]:
    """Every top-level key and every key of a section, as the stack file spells them."""
    keys: set[str] = set()
    fields: dict[str, pydantic.fields.FieldInfo] = PlatformSettings.model_fields
    for name, info in fields.items():
        top = info.alias or name
        section = _model_of(info.annotation)
        if section is None:
            keys.add(top)
            continue
        keys.update(
            f"{top}.{sub.alias or sub_name}" for sub_name, sub in section.model_fields.items()
        )
    return keys


def test_the_example_environments_are_the_ones_the_tests_plan_them_on() -> None:
    """The README's example table names every example with the stack the tests plan it
    on (and find free of mandatory violations)."""
    current = SECTIONS["readme_section"](readme(), "example-stacks")
    assert current is not None, "README.md lost the <!-- example-stacks:begin/end --> markers"
    rows = dict(re.findall(r"^\| `([^`]+\.yaml)` \| `(\w+)` \|$", current, re.MULTILINE))
    assert rows == EXAMPLE_STACKS


def test_settings_table_names_only_real_keys() -> None:
    assert table_keys() - model_keys() == set()


def test_every_setting_is_in_the_table() -> None:
    text = "\n".join(_settings_rows())
    missing = {key for key in model_keys() - table_keys() if f"`{key}." not in text}
    assert missing == set(), f"settings missing from the README table: {sorted(missing)}"


# --------------------------------------------------------------------------- links


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_links_stay_inside_the_repository(path: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        resolved = (path.parent / target).resolve()
        assert resolved.is_relative_to(REPO), f"{path.name} links outside the repo: {target}"
        assert resolved.exists(), f"{path.name} links to a missing file: {target}"
