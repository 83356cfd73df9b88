"""Small helpers shared by every ComponentResource."""

from __future__ import annotations

from typing import Any

import pulumi


def child_options(
    parent: pulumi.Resource, opts: pulumi.ResourceOptions | None, **extra: Any
) -> pulumi.ResourceOptions:
    """Options for a child: parented, and waiting on what the component waits on.

    Pulumi does not pass a component's ``depends_on`` down to its children, so
    without this a subnet could be created before the Compute API is enabled.
    """
    depends_on = list(opts.depends_on or []) if opts and isinstance(opts.depends_on, list) else []
    extra_deps = extra.pop("depends_on", None) or []
    return pulumi.ResourceOptions(parent=parent, depends_on=[*depends_on, *extra_deps], **extra)
