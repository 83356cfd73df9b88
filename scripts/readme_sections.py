"""The README sections that are generated from the code, between marker comments.

Each section sits between ``<!-- <name>:begin -->`` and ``<!-- <name>:end -->``
in README.md. ``tests/test_readme.py`` regenerates every section and fails when
the README differs, so a change to the presets, the architecture fields, the
policies or the platform plan that forgets the README fails the suite.

    .venv/bin/python scripts/readme_sections.py            # print every section
    .venv/bin/python scripts/readme_sections.py --check    # exit 1 if README.md is stale
    .venv/bin/python scripts/readme_sections.py --write    # rewrite the sections in place

Sections: ``presets`` (``workloads/presets.py`` PRESETS), ``architecture``
(``workloads/spec.py`` Architecture), ``policies`` (the pack's policies, their
default levels and parameters), ``resource-counts`` (the offline plans of the
shipped stacks: one count per stack, quoted everywhere else by that number).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHIPPED_STACKS = ("dev", "prod")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def presets_table() -> str:
    from gke_inference.workloads.presets import PRESETS
    from gke_inference.workloads.spec import Architecture

    fields = list(Architecture.model_fields)
    lines = [
        "| preset | " + " | ".join(f"`{_camel(f)}`" for f in fields) + " |",
        "| --- | " + " | ".join("---" for _ in fields) + " |",
    ]
    for name, numbers in PRESETS.items():
        cells = ["" if numbers[f] is None else str(numbers[f]) for f in fields]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def architecture_table() -> str:
    from gke_inference.workloads.spec import Architecture

    lines = ["| field | type | accepted |", "| --- | --- | --- |"]
    for name, info in Architecture.model_fields.items():
        annotation = info.annotation
        kind = getattr(annotation, "__name__", str(annotation)).replace("typing.", "")
        if not info.is_required():
            kind += " (optional)"
        bounds = []
        for meta in info.metadata:
            for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
                value = getattr(meta, attr, None)
                if value is not None:
                    bounds.append(f"{sign} {value}")
        kind = kind.replace("int | None", "int").replace("float | None", "float")
        lines.append(f"| `model.architecture.{_camel(name)}` | {kind} | {', '.join(bounds)} |")
    return "\n".join(lines)


def policies_table() -> str:
    from gke_inference.policy.pack import ALL_POLICIES

    lines = ["| Policy | Default | What it requires |", "| --- | --- | --- |"]
    for policy in ALL_POLICIES:
        level = policy.enforcement_level
        text = policy.description or ""
        schema = policy.config_schema
        if schema is not None and schema.properties:
            text += " Params: " + ", ".join(f"`{p}`" for p in schema.properties) + "."
        lines.append(f"| `{policy.name}` | {getattr(level, 'value', level)} | {text} |")
    return "\n".join(lines)


def resource_counts() -> dict[str, tuple[int, int]]:
    """Per shipped stack: (resources, cloud/cluster resources) of its offline plan."""
    from gke_inference.offline.planning import plan_platform

    counts = {}
    for stack in SHIPPED_STACKS:
        plan = plan_platform(stack, project_dir=REPO)
        counts[stack] = (len(plan.resources), sum(1 for r in plan.resources if r.custom))
    return counts


def resource_counts_text(counts: dict[str, tuple[int, int]] | None = None) -> str:
    counts = resource_counts() if counts is None else counts
    rows = ["| stack | resources | of them cloud/cluster resources |", "| --- | --- | --- |"]
    rows += [f"| `{stack}` | {total} | {custom} |" for stack, (total, custom) in counts.items()]
    return "\n".join(rows)


SECTIONS: dict[str, Callable[[], str]] = {
    "presets": presets_table,
    "architecture": architecture_table,
    "policies": policies_table,
    "resource-counts": resource_counts_text,
}


def section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {re.escape(name)}:begin -->\n)(?P<body>.*?)(\n<!-- {re.escape(name)}:end -->)",
        re.DOTALL,
    )


def readme_section(text: str, name: str) -> str | None:
    """The text between a section's markers, or None when the markers are missing."""
    match = section_pattern(name).search(text)
    return match["body"] if match else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 when README.md is stale")
    mode.add_argument("--write", action="store_true", help="rewrite the sections in README.md")
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    stale = []
    for name, generate in SECTIONS.items():
        body = generate()
        if not (args.check or args.write):
            print(f"<!-- {name}:begin -->\n{body}\n<!-- {name}:end -->\n")
            continue
        current = readme_section(text, name)
        if current is None:
            print(f"README.md has no {name} markers", file=sys.stderr)
            return 1
        if current != body:
            stale.append(name)
            text = section_pattern(name).sub(lambda m, body=body: m[1] + body + m[3], text)
    if args.write and stale:
        README.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale README sections: {', '.join(stale)}", file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
