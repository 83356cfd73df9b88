"""Where stacks live and how they are reached: backend, secrets, organization, state.

Everything comes from the environment so the CLI, the service and CI agree:

- ``PULUMI_BACKEND_URL``: the state backend (``file://...``, ``gs://bucket``, Pulumi
  Cloud). Default: a local file backend under the user's state directory.
- ``PULUMI_SECRETS_PROVIDER``: ``passphrase`` (default; needs
  ``PULUMI_CONFIG_PASSPHRASE`` or ``PULUMI_CONFIG_PASSPHRASE_FILE``), ``gcpkms://...``.
- ``GKE_INFERENCE_ORGANIZATION``: organization of the platform StackReference
  (``<org>/gke-inference/<env>``); DIY backends require ``organization``.
- ``GKE_INFERENCE_POLICY_CONFIG``: a ``--policy-pack-config`` JSON file.
- ``GKE_INFERENCE_PULUMI_ROOT``: a Pulumi installation (``<root>/bin/pulumi``)
  instead of ``pulumi`` on PATH.

The HTTP service's own settings (its API token, the request body limit) are
:class:`ServiceSettings`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

DEFAULT_ORGANIZATION = "organization"
DEFAULT_SECRETS_PROVIDER = "passphrase"


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/gke-inference``, else ``~/.local/state/gke-inference``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).absolute() / "gke-inference"


@dataclass(frozen=True)
class AutomationSettings:
    project_dir: Path
    backend_url: str
    state_dir: Path
    secrets_provider: str = DEFAULT_SECRETS_PROVIDER
    organization: str = DEFAULT_ORGANIZATION
    policy_config: Path | None = None
    pulumi_root: str | None = None

    @property
    def policy_pack(self) -> Path:
        """The CrossGuard pack applied to every preview and update."""
        return self.project_dir / "policy"

    def environments(self) -> list[str]:
        """Environments are the platform stack files ``Pulumi.<env>.yaml``."""
        return sorted(
            p.name[len("Pulumi.") : -len(".yaml")] for p in self.project_dir.glob("Pulumi.*.yaml")
        )

    @classmethod
    def from_env(
        cls,
        project_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AutomationSettings:
        from gke_inference.core.stack_config import find_project_dir

        env = os.environ if environ is None else environ
        root = (project_dir or find_project_dir()).resolve()
        state = state_dir(env)
        backend = env.get("PULUMI_BACKEND_URL") or (state / "pulumi-backend").as_uri()
        policy_config = env.get("GKE_INFERENCE_POLICY_CONFIG")
        return cls(
            project_dir=root,
            backend_url=backend,
            state_dir=state,
            secrets_provider=env.get("PULUMI_SECRETS_PROVIDER") or DEFAULT_SECRETS_PROVIDER,
            organization=env.get("GKE_INFERENCE_ORGANIZATION") or DEFAULT_ORGANIZATION,
            policy_config=Path(policy_config) if policy_config else None,
            pulumi_root=env.get("GKE_INFERENCE_PULUMI_ROOT") or None,
        )


# --------------------------------------------------------------------------- the HTTP service

TOKEN_ENV = "GKE_INFERENCE_API_TOKEN"
MAX_BODY_ENV = "GKE_INFERENCE_MAX_BODY_BYTES"
MIN_TOKEN_LENGTH = 32
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB: a spec is a few kB
# Arrays and objects inside one another in a request body; a spec nests about 4 deep.
MAX_JSON_DEPTH = 64
_TOKEN_HINT = "generate one with `openssl rand -hex 32`"


class ServiceConfigError(Exception):
    """The service cannot start (no or weak token, bad setting, bad database)."""


def check_api_token(token: str) -> str:
    """``token`` if it can serve as the service's bearer token, else ServiceConfigError.

    A token shorter than :data:`MIN_TOKEN_LENGTH` can be guessed; one with whitespace
    or control characters can never be sent intact in an ``Authorization`` header
    (clients strip it, so a trailing newline from a secret file would refuse every
    request). The message never shows the token.
    """
    if not token:
        raise ServiceConfigError(
            f"set {TOKEN_ENV} to the bearer token clients must send; refusing to start without it"
        )
    if not token.strip():
        raise ServiceConfigError(
            f"{TOKEN_ENV} is only whitespace; set it to a random token of at least "
            f"{MIN_TOKEN_LENGTH} characters ({_TOKEN_HINT})"
        )
    if any(not ("!" <= char <= "~") for char in token):
        raise ServiceConfigError(
            f"{TOKEN_ENV} contains whitespace, control or non-ASCII characters (a bearer "
            f"token is printable ASCII without spaces: check for a trailing newline); "
            f"{_TOKEN_HINT}"
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ServiceConfigError(
            f"{TOKEN_ENV} is {len(token)} characters long; at least {MIN_TOKEN_LENGTH} are "
            f"required ({_TOKEN_HINT})"
        )
    return token


@dataclass(frozen=True)
class ServiceSettings:
    """What the HTTP service needs besides a runner and a store, from the environment:

    - ``GKE_INFERENCE_API_TOKEN``: the bearer token of every ``/v1`` route (required,
      at least 32 printable characters, no whitespace).
    - ``GKE_INFERENCE_MAX_BODY_BYTES``: the largest request body read (default 1 MiB);
      a larger one is a 413, refused while it is read.
    """

    token: str
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        token: str | None = None,
        max_body_bytes: int | None = None,
    ) -> ServiceSettings:
        """The settings, ``token`` and ``max_body_bytes`` overriding the environment;
        ServiceConfigError (one message) when one is unusable."""
        env = os.environ if environ is None else environ
        api_token = check_api_token(token if token is not None else env.get(TOKEN_ENV, ""))
        if max_body_bytes is None:
            max_body_bytes = _positive_bytes(env.get(MAX_BODY_ENV, ""))
        elif max_body_bytes < 1:
            raise ServiceConfigError(f"the body limit must be positive (got {max_body_bytes})")
        return cls(token=api_token, max_body_bytes=max_body_bytes)


def _positive_bytes(text: str) -> int:
    if text == "":
        return DEFAULT_MAX_BODY_BYTES
    value = text.strip()
    if value.isascii() and value.isdigit() and int(value) > 0:
        return int(value)
    raise ServiceConfigError(
        f"{MAX_BODY_ENV} must be a positive number of bytes (got {text!r}); "
        f"default {DEFAULT_MAX_BODY_BYTES}"
    )


# --------------------------------------------------------------------------- database URLs

# The connection parameters of libpq that carry a credential.
SECRET_PARAMETERS = frozenset({"password", "sslpassword", "oauth_client_secret"})
REDACTED = "***"
_URI = re.compile(r"postgres(?:ql)?://[^\s\"'<>]*")
# keyword = value, libpq's grammar: a single-quoted value (backslash escapes, maybe
# unterminated), else a run of non-space characters (backslash escapes).
_KEYWORD_VALUE = re.compile(
    r"(?<![A-Za-z0-9_])(?P<key>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>'(?:[^'\\]|\\.)*'?|(?:[^\s\\]|\\.)+)"
)


def _userinfo_end(rest: str) -> int:
    """Where the ``user[:password]@`` of a URI's remainder ends (-1: there is none).

    libpq takes the first ``@`` before any ``/``; a password with an unencoded
    ``@`` is hidden whole by taking the last ``@`` before the next ``/`` or ``?``.
    """
    first = -1
    for position, char in enumerate(rest):
        if char == "/":
            break
        if char == "@":
            first = position
            break
    if first < 0:
        return -1
    stop = len(rest)
    for position in range(first + 1, len(rest)):
        if rest[position] in "/?":
            stop = position
            break
    return rest.rindex("@", 0, stop)


def _redact_uri(uri: str, secrets: set[str]) -> str:
    scheme, _, rest = uri.partition("://")
    end = _userinfo_end(rest)
    userinfo = ""
    if end >= 0:
        user, colon, password = rest[:end].partition(":")
        if colon:
            secrets.update({password, unquote(password), *password.split("@")})
        userinfo = f"{user}{colon}{REDACTED if colon else ''}@"
        rest = rest[end + 1 :]
    host, mark, query = rest.partition("?")
    if mark:
        params = []
        for param in query.split("&"):
            name, equals, value = param.partition("=")
            if equals and unquote(name).strip().lower() in SECRET_PARAMETERS:
                secrets.update({value, unquote(value)})
                value = REDACTED
            params.append(f"{name}{equals}{value}")
        query = "&".join(params)
    return f"{scheme}://{userinfo}{host}{mark}{query}"


def _redact_keyword(match: re.Match[str], secrets: set[str]) -> str:
    key, value = match.group("key"), match.group("value")
    if key.lower() not in SECRET_PARAMETERS or value == REDACTED:
        return match.group()
    quoted = len(value) > 1 and value.startswith("'") and value.endswith("'")
    inner = value[1:-1] if quoted else value
    secrets.update({value, inner.lstrip("'"), re.sub(r"\\(.)", r"\1", inner)})
    return f"{key}={REDACTED}"


def _redact(text: str) -> tuple[str, set[str]]:
    """``text`` with every credential of the database URIs and ``keyword=value``
    connection strings in it replaced by ``***``, and the values replaced."""
    secrets: set[str] = set()

    def keywords(part: str) -> str:
        return _KEYWORD_VALUE.sub(lambda m: _redact_keyword(m, secrets), part)

    pieces, start = [], 0
    for uri in _URI.finditer(text):
        pieces += [keywords(text[start : uri.start()]), _redact_uri(uri.group(), secrets)]
        start = uri.end()
    out = "".join([*pieces, keywords(text[start:])])
    secrets.discard(REDACTED)
    secrets.discard("")
    return out, secrets


def redact_url(target: str) -> str:
    """A database URL or connection string without its credentials, for messages.

    Every form libpq reads a credential from is hidden: the password of the
    userinfo (``postgresql://u:pw@h/db``), a ``password=`` (or ``sslpassword=``)
    query parameter, its name percent-encoded or not (``?%70assword=``), and
    ``password=...`` of a ``keyword=value`` string, quoted or not. A SQLite path is
    returned as is.
    """
    return _redact(str(target))[0]


def redact_error(message: str, target: str) -> str:
    """An error about the database ``target`` without its credentials.

    Drivers quote parts of a connection string they cannot parse (libpq:
    ``invalid percent-encoded token: "<password>%zz"``), so every credential value
    found in ``target`` is masked wherever it appears in ``message``, as are the
    credentials of any connection string ``message`` quotes.
    """
    out, quoted = _redact(message)
    _, secrets = _redact(str(target))
    for secret in sorted(secrets | quoted, key=len, reverse=True):
        if len(secret) >= 4:
            out = out.replace(secret, REDACTED)
        else:  # a short value only where it stands alone, not inside other words
            out = re.sub(rf"(?<![\w]){re.escape(secret)}(?![\w])", REDACTED, out)
    return out
