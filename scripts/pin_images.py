"""Resolve the digest of every pinned image and pin it in a stack's config.

A production stack runs every image by digest (``images.digests.<name>`` in its
stack config; ``gke_inference.core.images.PINNED_IMAGES`` names them). An offline
plan cannot ask a registry what a tag points to, so the digests are resolved
here, once per release, by a tool that can:

    python scripts/pin_images.py --stack prod                  # print the commands
    python scripts/pin_images.py --stack prod --apply          # run them (pulumi CLI)
    python scripts/pin_images.py --stack prod --resolver docker

Resolvers, tried in this order unless ``--resolver`` names one: ``crane digest``
(go-containerregistry), ``docker buildx imagetools inspect``, ``gcloud artifacts
docker images describe``. Public images are resolved at their upstream
(``docker.io/...``, ``registry.k8s.io/...``): the platform's remote repositories
serve the same manifests, so the digest is the same through them, and the
multi-architecture index digest is what is pinned (the kubelet picks its
platform's image from it). The team's own images (``worker``) are resolved in the
stack's Artifact Registry repository, after ``worker/cloudbuild.yaml`` pushed them.

Exit status: 0 when every digest was resolved, 2 on a usage or configuration
error, 3 when a resolver failed (what was resolved is still printed).
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gke_inference.core.errors import UserInputError  # noqa: E402
from gke_inference.core.images import PINNED_IMAGES, PinnedImage  # noqa: E402
from gke_inference.core.settings import parse_settings, project_config  # noqa: E402
from gke_inference.core.stack_config import load_stack_config, to_engine_config  # noqa: E402

DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
TIMEOUT_SECONDS = 120

Resolver = Callable[[str], list[str]]

#: resolver name -> (the executable it needs, the command that prints the digest)
RESOLVERS: dict[str, tuple[str, Resolver]] = {
    "crane": ("crane", lambda ref: ["crane", "digest", ref]),
    "docker": (
        "docker",
        lambda ref: [
            "docker", "buildx", "imagetools", "inspect", ref, "--format", "{{.Manifest.Digest}}",
        ],
    ),
    "gcloud": (
        "gcloud",
        lambda ref: [
            "gcloud", "artifacts", "docker", "images", "describe", ref,
            "--format=value(image_summary.digest)",
        ],
    ),
}  # fmt: skip


class PinError(Exception):
    """A resolver could not give a digest; the message says which image and why."""


def reference(image: PinnedImage, team_repository: str) -> str:
    """Where the digest of ``image`` is looked up."""
    if image.source == "team":
        return f"{team_repository}/{image.ref}"
    return image.public_ref


def pick_resolver(name: str | None) -> str:
    names = [name] if name else list(RESOLVERS)
    for candidate in names:
        if shutil.which(RESOLVERS[candidate][0]):
            return candidate
    wanted = ", ".join(RESOLVERS[n][0] for n in names)
    raise PinError(f"none of {wanted} is on PATH; install one (or pass --resolver)")


def resolve(resolver: str, ref: str) -> str:
    """The digest ``ref`` points to, by ``resolver``."""
    command = RESOLVERS[resolver][1](ref)
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PinError(f"{ref}: `{shlex.join(command)}` did not run: {exc}") from None
    found = DIGEST.findall(done.stdout)
    if done.returncode != 0 or len(set(found)) != 1:
        why = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
        raise PinError(f"{ref}: `{shlex.join(command)}` gave no single digest ({why[:200]})")
    return str(found[0])


def config_commands(stack: str, digests: dict[str, str]) -> list[list[str]]:
    return [
        [
            "pulumi", "config", "set", "--stack", stack, "--path",
            f"gke-inference:images.digests.{name}", digest,
        ]
        for name, digest in digests.items()
    ]  # fmt: skip


def apply(command: list[str]) -> str | None:
    """Run one ``pulumi config set``; what went wrong, or None."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`{shlex.join(command)}` did not run: {exc}"
    if done.returncode != 0:
        why = (done.stderr.strip() or "no output").splitlines()[-1]
        return f"`{shlex.join(command)}` failed ({why[:200]})"
    return None


def team_repository(stack: str) -> str:
    """The stack's team repository URL (``<region>-docker.pkg.dev/<project>/<repo>``), from
    its stack config (read as a non-production stack: the digests this script resolves
    are exactly what a production stack is still missing)."""
    config = to_engine_config(
        load_stack_config(REPO, stack, ["production=false", "images.requireDigests=false"])
    )
    settings = parse_settings(project_config(config), stack)
    return f"{settings.region}-docker.pkg.dev/{settings.project}/{settings.registry.repository}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", required=True, help="the platform stack to pin (dev, prod)")
    parser.add_argument("--resolver", choices=sorted(RESOLVERS), help="how to resolve digests")
    parser.add_argument(
        "--only", action="append", choices=sorted(PINNED_IMAGES), help="pin these images only"
    )
    parser.add_argument("--apply", action="store_true", help="run the `pulumi config set` commands")
    args = parser.parse_args(argv)
    try:
        repository = team_repository(args.stack)
    except (UserInputError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        resolver = pick_resolver(args.resolver)
    except PinError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    digests: dict[str, str] = {}
    failures: list[str] = []
    for name, image in PINNED_IMAGES.items():
        if args.only and name not in args.only:
            continue
        try:
            digests[name] = resolve(resolver, reference(image, repository))
        except PinError as exc:
            failures.append(str(exc))
    commands = config_commands(args.stack, digests)
    for command in commands:
        print(shlex.join(command))
        if args.apply:
            failure = apply(command)
            if failure:
                failures.append(failure)
    for failure in failures:
        print(f"error: {failure}", file=sys.stderr)
    return 3 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
