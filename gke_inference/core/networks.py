"""How much of the public internet a list of CIDRs opens, judged by address space, not by text.

``0.0.0.0/0`` is the obvious way to open a control plane to everyone; ``0.0.0.0/1``
plus ``128.0.0.0/1`` is the same thing in two entries, and ``0.0.0.0/2`` x 4, or a
/3 that is most of the routable space, are nearly so. Settings and the policy pack
both count the public addresses the entries cover together (overlaps once, the
special-purpose ranges of RFC 6890 not at all) and refuse more than one block of
a configurable size: :data:`MIN_PUBLIC_PREFIX` (a /16, 65,536 addresses) unless
configured otherwise.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

#: The widest public range an authorized network may open, as a prefix length.
MIN_PUBLIC_PREFIX = 16

#: IPv4 ranges that are not the public internet (RFC 6890 special-purpose blocks).
NOT_PUBLIC = tuple(
    ipaddress.IPv4Network(c)
    for c in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    )
)  # fmt: skip


def public_addresses(cidrs: Iterable[str | ipaddress.IPv4Network]) -> int:
    """How many public IPv4 addresses the CIDRs cover together."""
    networks = [ipaddress.IPv4Network(str(c), strict=False) for c in cidrs]
    total = 0
    for net in ipaddress.collapse_addresses(networks):
        private = 0
        for block in NOT_PUBLIC:
            if block.subnet_of(net):
                private += block.num_addresses
            elif net.subnet_of(block):
                private = net.num_addresses
                break
        total += net.num_addresses - private
    return total


def too_public(
    cidrs: Iterable[str | ipaddress.IPv4Network], min_prefix: int = MIN_PUBLIC_PREFIX
) -> str | None:
    """Why these CIDRs open too much of the internet, or None."""
    listed = [str(c) for c in cidrs]
    count = public_addresses(listed)
    limit = 2 ** (32 - min_prefix)
    if count <= limit:
        return None
    return (
        f"{', '.join(listed)} together open {count:,} public addresses, more than a "
        f"/{min_prefix} ({limit:,})"
    )
