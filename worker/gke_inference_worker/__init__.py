"""Workers for streaming (Pub/Sub) and batch (Indexed Job) inference.

Both call an OpenAI-compatible model server such as vLLM, usually running as a
sidecar in the same pod. See README.md for the environment contract.
"""

__version__ = "0.1.0"
