"""Rehearsal: what the server and the prefetch sidecar find under their FUSE mounts.

The bucket is laid out as the model download Job writes it (``$MODEL_BUCKET/
$MODEL_PATH/config.json`` and the shards) or, for a ``gs://`` id, where the
id says the weights are. Then the rendered volume is applied with gcsfuse's
semantics (``bucketName``; ``only-dir:<dir>`` makes that prefix the volume
root; the container's ``mountPath`` and ``subPath``), and the server's
``--model`` and the prefetch script are resolved against what the container
sees. The prefetch script itself runs (with a ``dd`` that records what it
reads, and a ``sleep`` that returns).
"""

from __future__ import annotations

import os
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

from gke_inference.workloads.vllm_server import table
from tests.test_runtime_cases import (
    CASES,
    FUSE_CASES,
    OTHER_BUCKET,
    Case,
    case,
    container,
    env_of,
    flag,
    platform_model_bucket,
)

SHARDS = ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors")


def written_location(c: Case) -> tuple[str, str]:
    """(bucket, path) where the weights are: the download Job's destination, or the id."""
    download = c.download_env()
    if download is not None:
        return download["MODEL_BUCKET"], download["MODEL_PATH"]
    model = c.spec.model
    assert model is not None
    if model.id.startswith("gs://"):
        bucket, _, path = model.id.removeprefix("gs://").partition("/")
        return bucket, path.strip("/")
    return platform_model_bucket(c.stack), model.id.lower()


def lay_out_bucket(gcs: Path, bucket: str, path: str) -> None:
    folder = gcs / bucket / path
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    (folder / "tokenizer.json").write_text("{}")
    for shard in SHARDS:
        (folder / shard).write_bytes(b"\0" * 64)
    # Another model beside it: a mount of the whole bucket would expose it too.
    (gcs / bucket / "other" / "config.json").parent.mkdir(parents=True, exist_ok=True)
    (gcs / bucket / "other" / "config.json").write_text("{}")


def volume_root(gcs: Path, volume: dict[str, Any]) -> Path:
    """gcsfuse: the bucket, or its ``only-dir`` prefix, is the root of the mount."""
    attributes = volume["csi"]["volumeAttributes"]
    root = gcs / attributes["bucketName"]
    for option in str(attributes.get("mountOptions", "")).split(","):
        if option.startswith("only-dir:"):
            root = root / option.removeprefix("only-dir:").strip("/")
    return root


def container_view(tmp: Path, gcs: Path, pod: dict[str, Any], c: dict[str, Any]) -> Path:
    """A directory standing for the container's filesystem, with its FUSE mounts."""
    rootfs = tmp / f"rootfs-{c['name']}"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in c.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "csi" not in volume:
            continue
        source = volume_root(gcs, volume) / mount.get("subPath", "")
        target = rootfs / mount["mountPath"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)
    return rootfs


def inside(rootfs: Path, path: str) -> Path:
    return rootfs / path.lstrip("/")


def laid_out(name: str, tmp_path: Path) -> tuple[Case, Path]:
    """The case, and its weights laid out in a stand-in for Cloud Storage."""
    c = case(name)
    gcs = tmp_path / "gcs"
    lay_out_bucket(gcs, *written_location(c))
    return c, gcs


@pytest.mark.parametrize("name", FUSE_CASES)
def test_server_model_path_holds_the_checkpoint(name: str, tmp_path: Path) -> None:
    c, gcs = laid_out(name, tmp_path)
    for pod in c.serving_pods():
        server = container(pod, "server")
        rootfs = container_view(tmp_path, gcs, pod, server)
        model = inside(rootfs, flag(server["args"], "--model"))
        assert (model / "config.json").is_file(), f"{name}: {model} has no config.json"
        assert {p.name for p in model.glob("*.safetensors")} == set(SHARDS)
        assert not (model / "other").exists()  # only the model's folder is mounted


def streamer_listing(gcs: Path, uri: str, patterns: list[str]) -> set[str]:
    """What runai_model_streamer_gcs lists for ``uri`` (files.list_files): the bucket's
    objects under the prefix, a trailing ``/`` added (files.glob), folder placeholders
    dropped, names matched with fnmatch against the allow patterns vLLM passes."""
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    prefix = prefix if prefix.endswith("/") else f"{prefix}/"
    names = [str(p.relative_to(gcs / bucket)) for p in (gcs / bucket).rglob("*") if p.is_file()]
    under = [n for n in names if n.startswith(prefix)]
    return {n.removeprefix(prefix) for n in under if any(fnmatch(n, p) for p in patterns)}


@pytest.mark.parametrize("name", [c for c in CASES if c not in FUSE_CASES])
def test_streamer_reads_the_checkpoint_where_the_weights_are(name: str, tmp_path: Path) -> None:
    """No mount: the server's ``--model`` is the weights' gs:// folder. vLLM pulls
    ``*.json``/``*.model``/``*.py`` from it (config, tokenizer) and streams every
    ``*.safetensors`` (vllm config/model.py, model_loader/runai_streamer_loader.py)."""
    c, gcs = laid_out(name, tmp_path)
    for pod in c.serving_pods():
        server = container(pod, "server")
        assert "model" not in {m["name"] for m in server["volumeMounts"]}
        uri = flag(server["args"], "--model")
        assert uri.startswith("gs://")
        assert streamer_listing(gcs, uri, ["*.model", "*.py", "*.json"]) == {
            "config.json",
            "tokenizer.json",
        }
        assert streamer_listing(gcs, uri, ["*.safetensors"]) == set(SHARDS)  # not other/


@pytest.mark.parametrize("name", FUSE_CASES)
def test_prefetch_reads_the_shards_the_server_loads(name: str, tmp_path: Path) -> None:
    c, gcs = laid_out(name, tmp_path)
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    log = tmp_path / "reads.log"
    # dd records its input; sleep returns at once (the real one keeps the sidecar alive).
    (fake_bin / "dd").write_text(
        f'#!/bin/sh\nfor a; do case "$a" in if=*) echo "${{a#if=}}" >> {log};; esac; done\n'
    )
    (fake_bin / "sleep").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("dd", "sleep"):
        (fake_bin / tool).chmod(0o755)
    for pod in c.serving_pods():
        log.unlink(missing_ok=True)
        server, prefetch = container(pod, "server"), container(pod, "prefetch")
        prefetch_mounts = {m["name"]: m["mountPath"] for m in prefetch["volumeMounts"]}
        server_mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
        assert prefetch_mounts["model"] == server_mounts["model"]
        rootfs = container_view(tmp_path / "prefetch", gcs, pod, prefetch)
        mount = prefetch_mounts["model"]
        # The mount point as the kernel shows it: the volume's root itself (a symlink
        # would not be descended by find, a mount is).
        script = prefetch["command"][-1].replace(mount, str(inside(rootfs, mount).resolve()))
        result = subprocess.run(
            ["/bin/sh", "-c", script],
            env={"PATH": f"{fake_bin}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "prefetched" in result.stdout
        read = sorted(Path(line).resolve() for line in log.read_text().split())
        model = inside(
            container_view(tmp_path / "server", gcs, pod, server), server_mounts["model"]
        )
        served = inside(rootfs, flag(server["args"], "--model")).resolve()
        assert read == sorted((served / shard).resolve() for shard in SHARDS), name
        assert model.resolve() == served or served.is_relative_to(model.resolve())


def test_a_gs_model_in_another_bucket_is_mounted_from_that_bucket() -> None:
    c = case("gs-other-bucket")
    (pod,) = c.serving_pods()
    model = next(v for v in pod["volumes"] if v["name"] == "model")
    assert model["csi"]["volumeAttributes"]["bucketName"] == OTHER_BUCKET
    assert "only-dir:checkpoints/gemma-3-1b-it" in model["csi"]["volumeAttributes"]["mountOptions"]


@pytest.mark.parametrize("name", CASES)
def test_compile_artifacts_land_in_the_prefix_the_server_may_write(
    name: str, tmp_path: Path
) -> None:
    """vLLM writes torch.compile artifacts to ``join($<root>, <folder>, <hash>, rank_0_0)``
    (the pinned wheel's VllmBackend.__call__, recorded in its table) and XLA programs
    to ``$VLLM_XLA_CACHE_PATH``: written through the rendered mount, the file must be
    an object under the prefix the account's conditioned write grant names."""
    c = case(name)
    gcs = tmp_path / "gcs"
    (gcs / platform_model_bucket(c.stack)).mkdir(parents=True)
    if c.spec.accelerator_info.kind == "gpu":
        layout = table("0.11.2")["compileCache"]
        variable, tail = layout["root"], (layout["folder"], "0a1b2c3d4e", "rank_0_0")
    else:
        variable, tail = "VLLM_XLA_CACHE_PATH", ()
    (grant,) = [
        r.inputs
        for r in c.plan.by_type("gcp:storage/bucketIAMMember:BucketIAMMember")
        if "condition" in r.inputs
    ]
    written = f"projects/_/buckets/{grant['bucket']}/objects/"
    admitted = grant["condition"]["expression"]
    assert admitted.startswith('resource.name.startsWith("') and admitted.endswith('")')
    allowed = admitted.removeprefix('resource.name.startsWith("').removesuffix('")')
    for pod in c.serving_pods():
        server = container(pod, "server")
        env = env_of(server)
        for volume in pod["volumes"]:  # gcsfuse shows an empty prefix as an empty root
            if "csi" in volume and not volume["csi"].get("readOnly"):
                volume_root(gcs, volume).mkdir(parents=True, exist_ok=True)
        rootfs = container_view(tmp_path / pod["containers"][0]["name"], gcs, pod, server)
        folder = inside(rootfs, env[variable]).joinpath(*tail)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "vllm_compile_cache.py").write_text("{}")
        (object_path,) = [
            p.relative_to(gcs / grant["bucket"]).as_posix()
            for p in (gcs / grant["bucket"]).rglob("vllm_compile_cache.py")
        ]
        assert f"{written}{object_path}".startswith(allowed), (name, object_path, allowed)
        (gcs / grant["bucket"] / object_path).unlink()


@pytest.mark.parametrize("name", CASES)
def test_no_mount_is_nested_in_another(name: str) -> None:
    """The runtime creates a nested mount's missing parents as root (0755) inside the
    outer volume, which the server's uid then cannot write: /tmp/x on /tmp would
    leave /tmp unwritable below it."""
    for pod in case(name).serving_pods():
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            paths = [Path(m["mountPath"]) for m in c.get("volumeMounts", [])]
            for path in paths:
                assert not any(path != other and path.is_relative_to(other) for other in paths), (
                    c["name"],
                    path,
                )


def test_tpu_xla_cache_is_a_writable_bucket_prefix() -> None:
    c = case("qwen3-32b-tpu-v6e")
    (pod,) = c.serving_pods()
    server = container(pod, "server")
    cache = next(v for v in pod["volumes"] if v["name"] == "xla-cache")
    attributes = cache["csi"]["volumeAttributes"]
    assert cache["csi"]["readOnly"] is False
    assert attributes["bucketName"] == platform_model_bucket("prod")
    options = attributes["mountOptions"].split(",")
    assert "only-dir:xla-cache/qwen--qwen3-32b/v0.11.1/2x4" in options
    assert {"uid=10000", "gid=10000"} <= set(options)  # the server's uid (lifecycle.RUN_AS)
    mounts = {m["name"]: m for m in server["volumeMounts"]}
    assert "readOnly" not in mounts["xla-cache"]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["VLLM_XLA_CACHE_PATH"] == mounts["xla-cache"]["mountPath"]
