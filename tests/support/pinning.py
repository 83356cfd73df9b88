"""Test digests for the shipped production stack.

A production stack runs every image by digest (the mandatory policy
``images-pinned-by-digest``), and the digests are configuration an operator
resolves at release with ``scripts/pin_images.py``, which needs a registry. The
shipped ``Pulumi.prod.yaml`` therefore carries none, and its plan fails that
policy, as it must. Tests plan it as a pinned stack would be planned: every
load of the shipped ``Pulumi.prod.yaml`` in-process gets ``images.digests``
filled with the values below (:func:`pinned_prod_config`, installed by the
autouse fixture in ``tests/conftest.py``; tests of the unpinned stack opt out
with the ``unpinned_prod`` fixture).

The values are derived, not resolved: ``sha256`` of the image's public
reference. They are well-formed digests of nothing; never copy them into a
stack config.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from gke_inference.core.images import PINNED_IMAGES

REPO = Path(__file__).resolve().parents[2]

TEST_DIGESTS: dict[str, str] = {
    name: "sha256:" + hashlib.sha256(image.public_ref.encode()).hexdigest()
    for name, image in PINNED_IMAGES.items()
}


def pinned_prod_config(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a parsed ``Pulumi.prod.yaml``) with every pinned image's test digest."""
    config = dict(data.get("config") or {})
    images = dict(config.get("gke-inference:images") or {})
    images["digests"] = {**TEST_DIGESTS, **dict(images.get("digests") or {})}
    config["gke-inference:images"] = images
    return {**data, "config": config}


def pinned_project_copy(root: Path) -> Path:
    """The platform project (stack files and program) copied to ``root``, its prod stack
    pinned with the test digests in the file itself: for a CLI run in a subprocess,
    which the in-process pinning does not reach."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.prod.yaml", "__main__.py"):
        shutil.copy(REPO / name, root / name)
    block = "".join(f"      {name}: {digest}\n" for name, digest in TEST_DIGESTS.items())
    with (root / "Pulumi.prod.yaml").open("a", encoding="utf-8") as out:
        out.write("  gke-inference:images:\n    digests:\n" + block)
    return root
