"""Binary Authorization admission, as the cluster applies it: the allow-list and its patterns.

The platform's project policy (``platform/security.py``) admits only images whose
name matches one of :func:`admission_patterns`; everything else is denied
(``ALWAYS_DENY``), except Google-maintained GKE system images, which the policy
exempts with ``globalPolicyEvaluationMode: ENABLE``. The platform exports the same
list (``binaryAuthorizationAllowlist``), and the CLI and service refuse a
production spec whose images the cluster would not admit.

Pattern semantics follow ``admissionWhitelistPatterns[].namePattern``: ``*``
matches within one path segment (no ``/``), ``**`` matches across segments;
everything else is literal, and the pattern must match the whole image name (a
trailing ``**`` covers any tag or digest).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

from gke_inference.core.images import has_digest

if TYPE_CHECKING:
    from gke_inference.core.settings import PlatformSettings

#: Image prefixes of the GKE system images Binary Authorization exempts when
#: ``globalPolicyEvaluationMode`` is ``ENABLE`` (the platform's setting).
SYSTEM_IMAGE_PATTERNS = ("gcr.io/gke-release/**",)


def admission_patterns(project: str, region: str) -> list[str]:
    """The allow-list the platform's Binary Authorization policy configures: this
    project's Artifact Registry in its region (remote repositories included)."""
    return [f"{region}-docker.pkg.dev/{project}/**"]


@lru_cache(maxsize=256)
def _compile(pattern: str) -> re.Pattern[str]:
    out = []
    for i, part in enumerate(pattern.split("**")):
        if i:
            out.append(".*")
        out.append("[^/]*".join(re.escape(p) for p in part.split("*")))
    return re.compile("".join(out))


def pattern_matches(pattern: str, image: str) -> bool:
    """Does ``image`` match one ``namePattern`` (``*`` within a segment, ``**`` across)?"""
    return _compile(pattern).fullmatch(image) is not None


def admitted(image: str, patterns: Iterable[str], *, system_exempt: bool = True) -> bool:
    """Would the cluster admit ``image`` under these allow-list patterns?"""
    candidates = [*patterns, *(SYSTEM_IMAGE_PATTERNS if system_exempt else ())]
    return any(pattern_matches(p, image) for p in candidates)


def image_problem(image: str, patterns: Sequence[str], *, digest_required: bool) -> str | None:
    """Why the cluster (or the production baseline) would refuse ``image``, or None.

    ``patterns`` empty means admission is not enforced (nothing to check)."""
    if patterns and not admitted(image, patterns):
        return (
            f"{image!r} is outside the environment's Binary Authorization allow-list "
            f"({', '.join(patterns)}); the cluster would refuse the pod: pull it through "
            "the platform's Artifact Registry (a remote repository or the team repository)"
        )
    if digest_required and not has_digest(image):
        return (
            f"{image!r} is not pinned by digest; this environment requires image@sha256:<64 hex> "
            "(get it with `crane digest <image>` or `gcloud artifacts docker images describe "
            "<image> --format='value(image_summary.digest)'`)"
        )
    return None


def binary_authorization_allowlist(settings: PlatformSettings) -> list[str]:
    """What the platform admits: its patterns where Binary Authorization is enforced, else
    nothing to check (``[]``, the platform output ``binaryAuthorizationAllowlist``)."""
    if not settings.binary_authorization_enforced:
        return []
    return admission_patterns(settings.project, settings.region)
