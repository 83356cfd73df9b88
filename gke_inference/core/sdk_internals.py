"""Every use of the Pulumi SDK's runtime internals, in one module.

The offline plan runs real programs under the SDK's mock runtime, and the
platform program reads the engine's config map; both need names that are not
the SDK's documented API. Nothing else in the project imports
``pulumi.runtime`` (a test asserts it), so an SDK upgrade checks this list and
runs ``tests/test_offline_runtime.py``:

==========================================  ===========================================
name in the SDK                             why
==========================================  ===========================================
``pulumi.runtime.config.CONFIG``            the config map the engine handed the program
``pulumi.runtime.config.get_config_env``    config passed through ``PULUMI_CONFIG``
``pulumi.runtime.config.set_all_config``    hand a stack's config to an offline run
``pulumi.runtime.settings.configure``       point the runtime at the mock monitor
``pulumi.runtime.settings.ROOT``            the root (stack) resource, reset between runs
``pulumi.runtime.settings.SETTINGS``        its ``outputs`` set, drained between runs
``pulumi.runtime.stack.run_in_stack``       run a program as the language host does
``pulumi.runtime.rpc`` (de)serialization    record inputs as the engine receives them
``pulumi.runtime.rpc.is_rpc_secret``        mask secrets in the recording
``pulumi.runtime.sync_await``               ``_ensure_event_loop``, ``_sync_await``
``pulumi.runtime.mocks.MockMonitor``        the monitor the recording extends
``pulumi.runtime.mocks.MockSettings``       runtime settings for a mocked run
``pulumi.runtime.mocks.MockEngine``         the engine log sink of a mocked run
``pulumi.runtime.mocks._resolve_callbacks`` transforms of a registration, as the mock does
``pulumi.runtime.proto.resource_pb2``       the RegisterResource response message
``pulumi._types._raw_return_hints``         an Args class's property types by engine name
==========================================  ===========================================
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pulumi import _types as _pulumi_types
from pulumi.runtime import mocks as _mocks
from pulumi.runtime import rpc as _rpc
from pulumi.runtime import settings as _settings
from pulumi.runtime.config import CONFIG as _CONFIG
from pulumi.runtime.config import get_config_env as _get_config_env
from pulumi.runtime.config import set_all_config as _set_all_config
from pulumi.runtime.mocks import _resolve_callbacks
from pulumi.runtime.proto import resource_pb2 as _resource_pb2
from pulumi.runtime.stack import run_in_stack as _run_in_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

# Public names of pulumi.runtime.mocks the offline plan builds on.
Mocks = _mocks.Mocks
MockMonitor = _mocks.MockMonitor
MockResourceArgs = _mocks.MockResourceArgs
MockCallArgs = _mocks.MockCallArgs
RegisterResourceResponse = _resource_pb2.RegisterResourceResponse


def engine_config() -> dict[str, Any]:
    """Every config value the engine handed to this program (environment and explicit)."""
    return {**_get_config_env(), **_CONFIG.get()}


def set_engine_config(config: Mapping[str, str], secret_keys: list[str]) -> None:
    _set_all_config(dict(config), secret_keys)


def configure_mock_runtime(
    monitor: Any, *, project: str, stack: str, organization: str, log: logging.Logger
) -> None:
    """Point the runtime at ``monitor``, as ``pulumi.runtime.set_mocks`` does, with a clean root."""
    reset_runtime()
    mock_settings = _mocks.MockSettings(  # type: ignore[no-untyped-call]
        monitor=monitor,
        monitor_features=set(),
        engine=_mocks.MockEngine(log),
        project=project,
        stack=stack,
        dry_run=False,
        organization=organization,
        callbacks=None,
    )
    _settings.configure(mock_settings)
    _settings.SETTINGS.outputs.clear()


def reset_runtime() -> None:
    """Forget the previous run's root resource and pending outputs."""
    _settings.SETTINGS.outputs.clear()
    _settings.ROOT.set(None)


def run_in_stack(program: Callable[[], Awaitable[None] | None]) -> Awaitable[None]:
    return _run_in_stack(program)


def ensure_event_loop() -> None:
    _ensure_event_loop()  # type: ignore[no-untyped-call]


def sync_await(awaitable: Awaitable[Any]) -> Any:
    return _sync_await(awaitable)


def resolve_callbacks(transforms: Any) -> Any:
    return _resolve_callbacks(transforms)


def deserialize_properties(struct: Any) -> Any:
    return _rpc.deserialize_properties(struct)


def serialize_properties(values: dict[str, Any]) -> Awaitable[Any]:
    return _rpc.serialize_properties(values, {})


def is_rpc_secret(value: Any) -> bool:
    return bool(_rpc.is_rpc_secret(value))


def input_property_hints(cls: type) -> dict[str, Any]:
    """The resolved type hint of every input property of an ``@input_type`` class
    (a resource's ``...Args`` or a nested input type), keyed by engine (camelCase) name."""
    hints: dict[str, Any] = _pulumi_types._raw_return_hints(cls)
    return hints


def is_input_type(cls: Any) -> bool:
    """Whether ``cls`` is an ``@pulumi.input_type`` class."""
    return isinstance(cls, type) and bool(_pulumi_types.is_input_type(cls))
