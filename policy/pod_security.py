"""The Pod Security Standards' ``restricted`` profile, checked on a pod spec before the cluster does.

The workload namespace enforces ``pod-security.kubernetes.io/enforce: restricted``
(version ``latest``), so the API server refuses a pod that breaks any control
below; checking it here turns a pod that would never start into a plan-time
error. The controls are the published ones (kubernetes.io/docs/concepts/security/
pod-security-standards, "Baseline" and "Restricted", Kubernetes 1.33), evaluated
on every container (init, app and ephemeral):

- baseline: no host namespaces (``hostNetwork``, ``hostPID``, ``hostIPC``), no
  privileged containers, added capabilities only from the baseline list, no
  ``hostPath`` volumes, no host ports, AppArmor only ``RuntimeDefault``/``Localhost``,
  SELinux only the container types and no custom user or role, ``procMount``
  ``Default``, seccomp never ``Unconfined``, only the safe sysctls, no Windows
  host process;
- restricted: volumes only of the listed types, ``allowPrivilegeEscalation: false``,
  ``runAsNonRoot: true`` (pod or every container, none saying false),
  ``runAsUser`` never 0, seccomp ``RuntimeDefault``/``Localhost`` (pod or every
  container), ``capabilities.drop`` contains ``ALL`` and ``add`` at most
  ``NET_BIND_SERVICE``.

:func:`project_problems` adds this project's own floor, beyond the profile: an
explicit user id of at least :data:`MIN_UID` (ids below are where node and image
users live) and a read-only root filesystem.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gke_inference.policy.props import get, items, number, obj, truthy

MIN_UID = 10000
BASELINE_CAPABILITIES = frozenset(
    {
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
        "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    }
)  # fmt: skip
RESTRICTED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
RESTRICTED_VOLUMES = (
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
    "projected", "secret",
)  # fmt: skip
SAFE_SYSCTLS = frozenset(
    {
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
        "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
        "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
        "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
    }
)  # fmt: skip
SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
SECCOMP_TYPES = ("RuntimeDefault", "Localhost")
APPARMOR_TYPES = ("RuntimeDefault", "Localhost")

Container = tuple[str, Mapping[str, Any]]  # (how messages name it, the container)


def _containers(pod: Mapping[str, Any]) -> list[Container]:
    found = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(items(pod.get(field))):
            c = obj(container)
            found.append((f"{field}[{i}] {c.get('name') or '?'}", c))
    return found


def _baseline(pod: Mapping[str, Any], ctx: Mapping[str, Any]) -> Iterator[str]:
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if truthy(pod.get(field)):
            yield f"{field} is true (host namespaces are not allowed)"
    for i, volume in enumerate(items(pod.get("volumes"))):
        if "hostPath" in obj(volume):
            yield f"volumes[{i}] {obj(volume).get('name')} is a hostPath volume (not allowed)"
    sysctls = [str(obj(s).get("name")) for s in items(ctx.get("sysctls"))]
    for name in sysctls:
        if name not in SAFE_SYSCTLS:
            yield f"securityContext.sysctls {name} is not a safe sysctl"
    yield from _common_context("securityContext", ctx)
    for who, c in _containers(pod):
        sc = obj(c.get("securityContext"))
        if truthy(sc.get("privileged")):
            yield f"{who}: securityContext.privileged is true"
        added = {str(a) for a in items(get(sc, "capabilities", "add"))}
        if added - BASELINE_CAPABILITIES:
            yield f"{who}: capabilities.add {sorted(added - BASELINE_CAPABILITIES)} (baseline)"
        for j, port in enumerate(items(c.get("ports"))):
            if number(obj(port).get("hostPort")):
                yield f"{who}: ports[{j}].hostPort is set (host ports are not allowed)"
        if sc.get("procMount") not in (None, "Default"):
            yield f"{who}: securityContext.procMount is {sc['procMount']!r}, not Default"
        yield from _common_context(f"{who}: securityContext", sc)


def _common_context(where: str, sc: Mapping[str, Any]) -> Iterator[str]:
    """Controls the pod and container security contexts share."""
    seccomp = get(sc, "seccompProfile", "type")
    if seccomp == "Unconfined":
        yield f"{where}.seccompProfile.type is Unconfined"
    apparmor = get(sc, "appArmorProfile", "type")
    if apparmor is not None and apparmor not in APPARMOR_TYPES:
        yield f"{where}.appArmorProfile.type is {apparmor!r}; accepted: RuntimeDefault, Localhost"
    selinux = obj(sc.get("seLinuxOptions"))
    if selinux.get("type", "") not in SELINUX_TYPES:
        yield f"{where}.seLinuxOptions.type {selinux['type']!r} is not a container type"
    for field in ("user", "role"):
        if selinux.get(field):
            yield f"{where}.seLinuxOptions.{field} is set (not allowed)"
    if truthy(get(sc, "windowsOptions", "hostProcess")):
        yield f"{where}.windowsOptions.hostProcess is true"


def _restricted(pod: Mapping[str, Any], ctx: Mapping[str, Any]) -> Iterator[str]:
    for i, volume in enumerate(items(pod.get("volumes"))):
        kinds = [k for k in obj(volume) if k != "name"]
        bad = [k for k in kinds if k not in RESTRICTED_VOLUMES]
        if bad:
            yield (
                f"volumes[{i}] {obj(volume).get('name')} is of type {bad[0]}; accepted: "
                f"{', '.join(RESTRICTED_VOLUMES)}"
            )
    pod_non_root = truthy(ctx.get("runAsNonRoot"))
    pod_seccomp = get(ctx, "seccompProfile", "type") in SECCOMP_TYPES
    if number(ctx.get("runAsUser")) == 0:
        yield "securityContext.runAsUser is 0 (root)"
    for who, c in _containers(pod):
        sc = obj(c.get("securityContext"))
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{who}: securityContext.allowPrivilegeEscalation must be false"
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            yield f"{who}: runAsNonRoot must be true (in the container or the pod)"
        if number(sc.get("runAsUser")) == 0:
            yield f"{who}: securityContext.runAsUser is 0 (root)"
        seccomp = get(sc, "seccompProfile", "type")
        if seccomp not in SECCOMP_TYPES and not (seccomp is None and pod_seccomp):
            yield (
                f"{who}: seccompProfile.type must be RuntimeDefault or Localhost (in the "
                "container or the pod)"
            )
        caps = obj(sc.get("capabilities"))
        if "ALL" not in {str(d) for d in items(caps.get("drop"))}:
            yield f"{who}: capabilities.drop must contain ALL"
        added = {str(a) for a in items(caps.get("add"))} - RESTRICTED_CAPABILITIES
        if added:
            yield f"{who}: capabilities.add {sorted(added)}; accepted: NET_BIND_SERVICE only"


def restricted_problems(pod: Mapping[str, Any]) -> list[str]:
    """What the ``restricted`` profile refuses in this pod spec (empty: admitted)."""
    ctx = obj(pod.get("securityContext"))
    return [*_baseline(pod, ctx), *_restricted(pod, ctx)]


def project_problems(pod: Mapping[str, Any]) -> list[str]:
    """This project's floor beyond the profile: an explicit uid >= MIN_UID, read-only root."""
    ctx = obj(pod.get("securityContext"))
    problems = []
    for who, c in _containers(pod):
        sc = obj(c.get("securityContext"))
        uid = number(sc.get("runAsUser"))
        uid = number(ctx.get("runAsUser")) if uid is None else uid
        if uid is None or uid < MIN_UID:
            problems.append(
                f"{who}: runs as uid {uid if uid is not None else '(image default)'}; set "
                f"runAsUser >= {MIN_UID} (ids below are node and image users)"
            )
        if sc.get("readOnlyRootFilesystem") is not True:
            problems.append(f"{who}: readOnlyRootFilesystem must be true")
    return problems
