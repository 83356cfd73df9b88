"""Environment configuration for both workers, parsed once with pydantic.

Every setting is an environment variable whose name is the field alias. A bad
or missing variable raises :class:`ConfigError`, which lists each problem with
the variable name, the value given and what is accepted; the CLI turns it into
exit code 2 without a traceback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

# Pub/Sub resource ids: 3-255 chars, start with a letter, must not start with "goog".
_RESOURCE_ID = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")
_PROJECT_ID = re.compile(r"[a-z][a-z0-9\-]{4,28}[a-z0-9]|[a-z0-9.\-:]+")
_FULL_PATH = {
    "topics": re.compile(r"projects/([^/]+)/topics/([^/]+)"),
    "subscriptions": re.compile(r"projects/([^/]+)/subscriptions/([^/]+)"),
}


class ConfigProblem(BaseModel):
    """One invalid or missing environment variable."""

    variable: str
    value: str | None
    problem: str
    accepted: str

    def __str__(self) -> str:
        given = " is not set" if self.value is None else f"={self.value!r}"
        return f"{self.variable}{given}: {self.problem} (accepted: {self.accepted})"


class ConfigError(Exception):
    """The environment does not describe a valid worker configuration."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


def _check_endpoint(value: str) -> str:
    if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", value):
        raise ValueError("must be an http:// or https:// base URL")
    value = value.rstrip("/")
    # Accept the common ".../v1" spelling; the worker appends /v1/... itself.
    return value.removesuffix("/v1")


def _resource_check(kind: str) -> AfterValidator:
    def check(value: str) -> str:
        if "/" in value:
            if not _FULL_PATH[kind].fullmatch(value):
                raise ValueError(f"is a resource path but not projects/PROJECT/{kind}/NAME")
            return value
        if not _RESOURCE_ID.fullmatch(value) or value.startswith("goog"):
            raise ValueError(
                "is not a valid Pub/Sub id (3-255 letters, digits, - _ . ~ + %, "
                "starting with a letter, not with 'goog')"
            )
        return value

    return AfterValidator(check)


def _check_pattern(value: str) -> str:
    if "{index" not in value or "/" in value:
        raise ValueError("must be a file name containing {index}")
    try:
        value.format(index=0)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"is not a valid format string ({exc})") from None
    return value


Endpoint = Annotated[str, AfterValidator(_check_endpoint)]
TopicRef = Annotated[str, _resource_check("topics")]
SubscriptionRef = Annotated[str, _resource_check("subscriptions")]
Pattern = Annotated[str, AfterValidator(_check_pattern)]
NonEmpty = Annotated[str, Field(min_length=1)]
Port = Annotated[int, Field(ge=0, le=65535)]


class _EnvModel(BaseModel):
    """Base: fields are filled from env vars named by their alias."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=False)

    # What each variable accepts, for error messages (alias -> description).
    ACCEPTED: ClassVar[dict[str, str]] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Any:
        aliases = [f.alias or name for name, f in cls.model_fields.items()]
        raw = {a: env[a] for a in aliases if a in env and env[a] != ""}
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(cls._problems(exc, raw)) from None

    @classmethod
    def _problems(cls, exc: ValidationError, raw: Mapping[str, str]) -> list[ConfigProblem]:
        problems: list[ConfigProblem] = []
        for err in exc.errors(include_url=False):
            loc = [str(p) for p in err["loc"]]
            ctx = err.get("ctx") or {}
            variable = loc[0] if loc else str(ctx.get("variable", "configuration"))
            if not loc and "variable" not in ctx:
                # model-level validator: message starts with the variable name
                msg = str(err["msg"]).removeprefix("Value error, ")
                variable, _, rest = msg.partition(" ")
                problems.append(
                    ConfigProblem(
                        variable=variable,
                        value=raw.get(variable),
                        problem=rest,
                        accepted=cls.ACCEPTED.get(variable, "see README"),
                    )
                )
                continue
            missing = err["type"] == "missing"
            problems.append(
                ConfigProblem(
                    variable=variable,
                    value=None if missing else raw.get(variable),
                    problem="is required"
                    if missing
                    else str(err["msg"]).removeprefix("Value error, "),
                    accepted=cls.ACCEPTED.get(variable, "see README"),
                )
            )
        return problems


class ModelSettings(_EnvModel):
    """Settings shared by both workers: the model server and retry policy."""

    model_endpoint: Endpoint = Field(alias="MODEL_ENDPOINT")
    model_name: NonEmpty = Field(alias="MODEL_NAME")
    max_concurrency: int = Field(default=8, ge=1, le=1024, alias="MAX_CONCURRENCY")
    request_timeout_s: float = Field(default=120.0, gt=0, le=3600, alias="REQUEST_TIMEOUT_S")
    max_attempts: int = Field(default=3, ge=1, le=100, alias="MAX_ATTEMPTS")
    backoff_initial_s: float = Field(default=0.5, ge=0, le=600, alias="BACKOFF_INITIAL_S")
    backoff_max_s: float = Field(default=10.0, ge=0, le=3600, alias="BACKOFF_MAX_S")
    backoff_multiplier: float = Field(default=2.0, ge=1, le=10, alias="BACKOFF_MULTIPLIER")
    model_ready_timeout_s: float = Field(default=900.0, ge=0, alias="MODEL_READY_TIMEOUT_S")
    shutdown_grace_s: float = Field(default=25.0, gt=0, le=3600, alias="SHUTDOWN_GRACE_S")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", alias="LOG_LEVEL"
    )

    ACCEPTED: ClassVar[dict[str, str]] = {
        "MODEL_ENDPOINT": "base URL of an OpenAI-compatible server, e.g. http://localhost:8000",
        "MODEL_NAME": "non-empty model name as served, e.g. google/gemma-3-1b-it",
        "MAX_CONCURRENCY": "integer 1..1024",
        "REQUEST_TIMEOUT_S": "number of seconds, > 0 and <= 3600",
        "MAX_ATTEMPTS": "integer 1..100",
        "BACKOFF_INITIAL_S": "number of seconds 0..600",
        "BACKOFF_MAX_S": "number of seconds 0..3600",
        "BACKOFF_MULTIPLIER": "number 1..10",
        "MODEL_READY_TIMEOUT_S": "number of seconds >= 0 (0 = do not wait)",
        "SHUTDOWN_GRACE_S": "number of seconds, > 0 and <= 3600",
        "METRICS_PORT": "port 0..65535 (0 = no metrics endpoint)",
        "LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR",
    }


class StreamingConfig(ModelSettings):
    """`gke-inference-worker streaming`: Pub/Sub in, Pub/Sub out."""

    project: str | None = Field(default=None, alias="GOOGLE_CLOUD_PROJECT")
    input_subscription: SubscriptionRef = Field(alias="INPUT_SUBSCRIPTION")
    output_topic: TopicRef = Field(alias="OUTPUT_TOPIC")
    dead_letter_topic: TopicRef = Field(alias="DEAD_LETTER_TOPIC")
    metrics_port: Port = Field(default=9090, alias="METRICS_PORT")
    max_lease_extension_s: int = Field(default=60, ge=10, le=600, alias="MAX_LEASE_EXTENSION_S")

    ACCEPTED: ClassVar[dict[str, str]] = {
        **ModelSettings.ACCEPTED,
        "MAX_LEASE_EXTENSION_S": "integer seconds 10..600",
        "GOOGLE_CLOUD_PROJECT": "a project id; required when a topic or subscription is an id",
        "INPUT_SUBSCRIPTION": "subscription id or projects/P/subscriptions/S",
        "OUTPUT_TOPIC": "topic id or projects/P/topics/T",
        "DEAD_LETTER_TOPIC": "topic id or projects/P/topics/T",
    }

    @model_validator(mode="after")
    def _resolve_paths(self) -> StreamingConfig:
        """Expand the ids among the topics and the subscription into full resource paths."""
        for field, kind in (
            ("input_subscription", "subscriptions"),
            ("output_topic", "topics"),
            ("dead_letter_topic", "topics"),
        ):
            value: str = getattr(self, field)
            if "/" in value:
                continue  # a full path, already checked by the field's own validator
            variable = type(self).model_fields[field].alias
            if not self.project:
                raise ValueError(
                    f"GOOGLE_CLOUD_PROJECT is required because {variable}={value!r} is an id, "
                    "not a full resource path"
                )
            if not _PROJECT_ID.fullmatch(self.project):
                raise ValueError("GOOGLE_CLOUD_PROJECT is not a valid project id")
            object.__setattr__(self, field, f"projects/{self.project}/{kind}/{value}")
        return self


class BatchConfig(ModelSettings):
    """`gke-inference-worker batch`: one JSONL shard per Indexed Job index."""

    input_dir: NonEmpty = Field(alias="INPUT_DIR")
    output_dir: NonEmpty = Field(alias="OUTPUT_DIR")
    job_completion_index: int = Field(ge=0, alias="JOB_COMPLETION_INDEX")
    input_pattern: Pattern = Field(default="input_shard_{index}.jsonl", alias="INPUT_PATTERN")
    output_pattern: Pattern = Field(default="output_shard_{index}.jsonl", alias="OUTPUT_PATTERN")
    max_failure_fraction: float = Field(default=0.05, ge=0, le=1, alias="MAX_FAILURE_FRACTION")
    metrics_port: Port = Field(default=0, alias="METRICS_PORT")

    ACCEPTED: ClassVar[dict[str, str]] = {
        **ModelSettings.ACCEPTED,
        "INPUT_DIR": "directory holding the input shards",
        "OUTPUT_DIR": "writable directory for results",
        "JOB_COMPLETION_INDEX": "integer >= 0 (set by an Indexed Job)",
        "INPUT_PATTERN": "file name containing {index}, e.g. input_shard_{index}.jsonl",
        "OUTPUT_PATTERN": "file name containing {index}, e.g. output_shard_{index}.jsonl",
        "MAX_FAILURE_FRACTION": "number 0..1",
    }

    @property
    def input_name(self) -> str:
        return self.input_pattern.format(index=self.job_completion_index)

    @property
    def output_name(self) -> str:
        return self.output_pattern.format(index=self.job_completion_index)
