"""What a container needs to start and stop cleanly on a node, beyond its image.

- User name: the vLLM and worker images have no passwd entry for the uids we
  run them as (RUN_AS 10000, WORKER_UID 65532). ``getpass.getuser()``, which
  torch inductor calls while ``import vllm`` runs, reads ``LOGNAME``, ``USER``,
  ``LNAME``, ``USERNAME`` and only then the passwd database, where it raises
  ``KeyError: 'getpwuid(): uid not found'``. :func:`user_env` sets the first two.
- Drain: on SIGTERM vLLM stops its HTTP server at once, cutting in-flight
  streams. The preStop hook (:data:`DRAIN_SCRIPT`, python3 only: the one
  interpreter every vLLM image has; curl is not promised) runs first: it waits
  out endpoint propagation, then polls the server's running and waiting
  request gauges on /metrics until they reach 0, bounded. The pod's grace
  period (:func:`grace_period_seconds`) is longer than the whole drain.
"""

from __future__ import annotations

import pulumi_kubernetes as k8s
from pulumi_kubernetes.core.v1 import EnvVarArgs

# The uid vLLM servers, ComfyUI and the platform's other containers run as; the
# images have no passwd entry for it. At least 10000: lower ids are where node
# users and image users live (policy k8s-high-uid-read-only-root).
RUN_AS = 10000

# The name getpass.getuser() returns in containers whose uid the image does
# not know (it reads LOGNAME, USER, LNAME, USERNAME, then the passwd database).
CONTAINER_USER = "inference"

# Drain on shutdown (DRAIN_SCRIPT). Endpoint propagation: the EndpointSlice
# drops a terminating pod at once, but the gateway's load balancer (NEG
# detach) and the endpoint picker take seconds to tens of seconds to stop
# sending. In-flight bound: the cluster autoscaler waits at most 600 s
# (--max-graceful-termination-sec default) for a pod on a node it removes, so
# propagation + in-flight + shutdown stay under that: 30 + 480 + 30 = 540 s.
DRAIN_PROPAGATION_SECONDS = 30
DRAIN_TIMEOUT_SECONDS = 480
DRAIN_POLL_SECONDS = 2
SHUTDOWN_MARGIN_SECONDS = 30  # vLLM's own exit after SIGTERM, and the FUSE sidecar's
DRAIN_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")

# A preStop hook: python3 only (every vLLM image has it; curl is not promised).
# The environment may override the baked-in bounds (tests use short ones).
DRAIN_SCRIPT = """\
import os, re, sys, time, urllib.request
env = os.environ.get
propagation = float(env("DRAIN_PROPAGATION_S", "@PROPAGATION@"))
timeout = float(env("DRAIN_TIMEOUT_S", "@TIMEOUT@"))
poll = float(env("DRAIN_POLL_S", "@POLL@"))
url = env("DRAIN_METRICS_URL", "http://127.0.0.1:@PORT@/metrics")
gauge = re.compile(r"^(@GAUGES@)(?:\\{[^}]*\\})?\\s+(\\S+)")
def in_flight():
    with urllib.request.urlopen(url, timeout=min(2.0, max(poll, 0.1))) as response:
        text = response.read().decode("utf-8", "replace")
    return sum(float(m.group(2)) for m in map(gauge.match, text.splitlines()) if m)
time.sleep(propagation)
deadline = time.monotonic() + timeout
while True:
    try:
        busy = in_flight()
    except Exception as exc:
        print(f"drain: no metrics ({exc}); nothing to wait for", flush=True)
        sys.exit(0)
    if busy <= 0:
        print("drain: no requests in flight", flush=True)
        sys.exit(0)
    left = deadline - time.monotonic()
    if left <= 0:
        print(f"drain: {busy:g} requests still in flight after {timeout:g}s", flush=True)
        sys.exit(0)
    print(f"drain: {busy:g} requests in flight", flush=True)
    time.sleep(min(poll, left))
"""


def grace_period_seconds(propagation_seconds: int = DRAIN_PROPAGATION_SECONDS) -> int:
    """terminationGracePeriodSeconds of a serving pod: longer than its drain's bound."""
    return propagation_seconds + DRAIN_TIMEOUT_SECONDS + SHUTDOWN_MARGIN_SECONDS


def drain_script(
    propagation_seconds: int = DRAIN_PROPAGATION_SECONDS,
    timeout_seconds: int = DRAIN_TIMEOUT_SECONDS,
    *,
    port: int,
) -> str:
    """The preStop drain of a vLLM server (see DRAIN_SCRIPT)."""
    values = {
        "@PROPAGATION@": str(propagation_seconds),
        "@TIMEOUT@": str(timeout_seconds),
        "@POLL@": str(DRAIN_POLL_SECONDS),
        "@PORT@": str(port),
        "@GAUGES@": "|".join(DRAIN_GAUGES),
    }
    script = DRAIN_SCRIPT
    for token, value in values.items():
        script = script.replace(token, value)
    return script


def user_env() -> list[EnvVarArgs]:
    """A user name for processes whose uid has no passwd entry in the image."""
    return [
        EnvVarArgs(name="USER", value=CONTAINER_USER),
        EnvVarArgs(name="LOGNAME", value=CONTAINER_USER),
    ]


def drain_hook(propagation_seconds: int, port: int) -> k8s.core.v1.LifecycleArgs:
    """The preStop drain of a vLLM server listening on ``port``."""
    return k8s.core.v1.LifecycleArgs(
        pre_stop=k8s.core.v1.LifecycleHandlerArgs(
            exec_=k8s.core.v1.ExecActionArgs(
                command=["python3", "-c", drain_script(propagation_seconds, port=port)]
            )
        )
    )
