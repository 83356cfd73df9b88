"""Command line: ``gke-inference plan`` and friends."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from gke_inference.errors import UserInputError

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USER_ERROR = 2


def _plan(args: argparse.Namespace) -> int:
    from gke_inference.planning import plan_platform
    from gke_inference.render import render_tree

    plan = plan_platform(args.stack, args.config)
    if args.format == "json":
        sys.stdout.write(json.dumps(plan.to_json(), indent=2, sort_keys=False) + "\n")
    else:
        sys.stdout.write(render_tree(plan) + "\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gke-inference",
        description="GKE inference reference architecture as a Pulumi program.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser(
        "plan",
        help="show offline what `pulumi up` would register (no cloud, no CLI needed)",
    )
    plan.add_argument("--stack", "-s", default="dev", help="environment: dev, prod, ...")
    plan.add_argument("--format", choices=["text", "json"], default="text")
    plan.add_argument(
        "--config",
        "-c",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="override a config value (pulumi config set --path syntax), repeatable",
    )
    plan.set_defaults(handler=_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s"
    )
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except UserInputError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USER_ERROR
    return code


if __name__ == "__main__":
    raise SystemExit(main())
