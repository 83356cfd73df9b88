"""Building blocks every section of the workload spec uses (workloads.spec).

Strict types (no bool -> int, no "16" -> 16), exact integers for Literal
choices, and gs:// paths that name one place.
"""

from __future__ import annotations

from typing import Annotated, Any

import pydantic

from gke_inference.core.validation import StrictModel, describe_pattern

GCS_PREFIX = describe_pattern(
    r"^gs://[a-z0-9][a-z0-9._-]{1,61}[a-z0-9](/[^\s]*)?$", "a gs://bucket/prefix path"
)


def gcs_segments(value: str) -> str:
    """A gs:// id or prefix names one place: no ``.``, ``..`` or empty path segments.

    The path becomes a FUSE mount's only-dir and the server's ``--model`` path,
    where ``..`` would climb out of the mount. One trailing ``/`` is accepted.
    """
    if value.startswith("gs://"):
        path = value.removeprefix("gs://").partition("/")[2]
        segments = path.removesuffix("/").split("/") if path else []
        bad = [s for s in segments if s in ("", ".", "..")]
        if bad:
            shown = "an empty segment (//)" if bad[0] == "" else f"a {bad[0]!r} segment"
            raise ValueError(
                f"a gs:// path must not contain {shown}; accepted: gs://bucket/dir/... "
                "with plain names"
            )
    return value


GcsPath = Annotated[str, pydantic.AfterValidator(gcs_segments)]


def exact_int(value: Any) -> Any:
    """Literal[1, 2, ...] would take True and 2.0 (they compare equal): only an int."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"Input should be an integer, not {type(value).__name__}")
    return value


class SpecModel(StrictModel):
    """Base of every spec section: strict types (no bool -> int, no "16" -> 16)."""

    model_config = pydantic.ConfigDict(strict=True)
