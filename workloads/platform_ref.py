"""What a workload stack reads from its environment's platform stack.

The workload program reads the platform stack's outputs once, through a
StackReference, and works with plain values from then on: errors (a compute
class the environment does not enable) are raised before any workload
resource is registered, and the resources' inputs stay plain data instead of
trees of Outputs. Which outputs exist is the contract's business
(:mod:`gke_inference.core.contract`); only the kubeconfig stays an Output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi

from gke_inference.core.contract import PlatformOutputs, platform_stack_name


@dataclass(frozen=True)
class PlatformRef(PlatformOutputs):
    """The platform stack's outputs, resolved, with its reference and kubeconfig."""

    reference: pulumi.StackReference = field(kw_only=True)
    kubeconfig: pulumi.Output[str] = field(kw_only=True)  # stays a secret Output


async def read_platform(organization: str, environment: str) -> PlatformRef:
    """Read the outputs contract of ``organization/gke-inference/<environment>``."""
    name = platform_stack_name(organization, environment)
    reference = pulumi.StackReference(name)

    async def value_of(key: str) -> Any:
        details = await reference.get_output_details(key)
        return details.value if details.value is not None else details.secret_value

    outputs = await PlatformOutputs.read(value_of, stack=name, environment=environment)
    return PlatformRef(
        **vars(outputs),
        reference=reference,
        kubeconfig=pulumi.Output.secret(reference.require_output("kubeconfig")).apply(str),
    )
