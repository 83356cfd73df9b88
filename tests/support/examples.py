"""The shipped workload examples and the environment each is planned in."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "workloads" / "examples"
# Environment each example is planned in: the one that enables its compute class.
EXAMPLE_STACKS = {
    "gemma-3-1b-l4.yaml": "dev",
    "llama-3-3-70b-h100.yaml": "prod",
    "qwen3-32b-tpu-v6e.yaml": "prod",
    "batch-llama-8b-l4.yaml": "dev",
    "streaming-gemma-l4.yaml": "dev",
    "comfyui-l4.yaml": "dev",
}
