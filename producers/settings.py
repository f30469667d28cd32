"""Settings shared by every component (:class:`SharedSettings`), and the producer SDK's.

Every component's settings class extends :class:`SharedSettings`, which lives here, in
the lowest layer that reads settings, because the SDK needs it too. Precedence
everywhere: argument, then environment (``AGENTGYM_*``), then default. Every variable is
documented in ``docs/configuration.md``, which ``python -m agentgym.ops.configdoc``
generates from these classes.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentgym.producers.masking import Masker, MaskingConfigError, parse_fields

__all__ = [
    "SharedSettings", "ProducerSettings", "default_home", "env_variable", "parse_choices", "avro_enum_symbols", "PREFIX",
    "readable_file",
]

PREFIX = "AGENTGYM_"
"""The prefix of every Agent Gym environment variable."""


def default_home() -> Path:
    """``~/.agentgym``: where the local stack keeps its state (``AGENTGYM_HOME`` unset)."""
    return Path.home() / ".agentgym"


def parse_choices(value: str, *, variable: str, allowed: Iterable[str], what: str = "value") -> list[str]:
    """The entries of a comma-separated setting, each checked against ``allowed``.

    Args:
        value: the setting's text (``"sft, preference"``); empty entries are skipped.
        variable: the environment variable, named in the error (``AGENTGYM_TRAINER_KINDS``).
        allowed: the accepted entries.
        what: what an entry is, for the message (``"kind"``).

    Returns:
        The entries, stripped, in order, without repeats.

    Raises:
        ValueError: an entry is not allowed (pydantic reports it as a validation error
            of the field); the message names the variable and the allowed values.
    """
    known = list(allowed)
    entries = list(dict.fromkeys(e.strip() for e in value.split(",") if e.strip()))
    unknown = [e for e in entries if e not in known]
    if unknown:
        raise ValueError(f"{variable}: unknown {what}(s) {unknown}; allowed: {known} (comma-separated)")
    return entries


@cache
def avro_enum_symbols(record: str, field: str) -> tuple[str, ...]:
    """The symbols of the enum field ``field`` of ``record``'s newest schema (e.g. Feedback's ``source``)."""
    from agentgym.schemas import default_schema_set  # the schema set is loaded on first use only

    for f in default_schema_set().latest(record).raw["fields"]:
        if f["name"] == field:
            t = f["type"]
            for member in t if isinstance(t, list) else [t]:
                if isinstance(member, dict) and member.get("type") == "enum":
                    return tuple(member["symbols"])
    raise LookupError(f"{record}.{field} is not an enum field")


def readable_file(path: Path, variable: str) -> Path:
    """``path`` when it is a file this process can read; else a ``ValueError`` naming ``variable`` and why.

    Used for certificates and keys, whose absence should fail at start-up, not at the first connection.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ValueError(f"{variable}: {p}: no such file")
    if not p.is_file():
        raise ValueError(f"{variable}: {p}: not a file")
    try:
        with open(p, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ValueError(f"{variable}: {p}: not readable ({exc.strerror})") from None
    return p


def env_variable(cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable ``cls`` reads ``field_name`` from (an alias as is, else prefix + name).

    Where the alias offers several names, the first that starts with :data:`PREFIX` (the one that wins).
    """
    field = cls.model_fields[field_name]
    alias = field.validation_alias or field.alias
    if isinstance(alias, str):
        return alias.upper()
    if isinstance(alias, AliasChoices):
        for choice in alias.choices:
            if isinstance(choice, str) and choice.upper().startswith(PREFIX):
                return choice.upper()
    return (str(cls.model_config.get("env_prefix", "")) + field_name).upper()


def _naming_variables(cls: type[BaseSettings], exc: ValidationError) -> ValidationError:
    """``exc`` with each field's location spelt ``AGENTGYM_X (x)``: the variable an operator sets."""
    by_alias = {env_variable(cls, name): name for name in cls.model_fields}
    details: list[Any] = []
    for err in exc.errors(include_url=False):
        loc = err["loc"]
        head = loc[0] if loc else None
        name = head if head in cls.model_fields else by_alias.get(str(head).upper())
        if name is not None:
            loc = (f"{env_variable(cls, name)} ({name})", *loc[1:])
        detail: Any = {"type": err["type"], "loc": loc, "input": err["input"]}  # pydantic-core InitErrorDetails
        if "ctx" in err:
            detail["ctx"] = err["ctx"]
        try:
            ValidationError.from_exception_data(exc.title, [detail])
        except (KeyError, TypeError, ValueError):  # a type pydantic-core cannot rebuild: keep its message
            message = err["msg"].replace("{", "(").replace("}", ")")
            detail = {"type": PydanticCustomError(err["type"], message), "loc": loc, "input": err["input"]}
        details.append(detail)
    return ValidationError.from_exception_data(exc.title, details)


class SharedSettings(BaseSettings):
    """The settings every component shares; each component's settings class extends it.

    These variables keep their names whatever prefix a subclass reads its own fields
    under (the labeller reads its own under a longer prefix), so one environment configures
    every component alike.
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore", populate_by_name=True)

    home: Path = Field(
        default_factory=default_home,
        validation_alias=f"{PREFIX}HOME",
        description="state of the local stack: the broker's data, the embedded ClickHouse store, datasets, models, "
        "job records and Faust's data default to directories under it",
        json_schema_extra={"doc_default": "`~/.agentgym`"},
    )
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=f"{PREFIX}BOOTSTRAP_SERVERS",
        description="Kafka bootstrap servers, `host:port[,host:port...]`. In `compose.yaml` the containers use "
        "`kafka:29092`; on the host the compose broker and the local broker are at the default.",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        validation_alias=f"{PREFIX}KAFKA_SECURITY_PROTOCOL",
        description="how every component talks to Kafka: `PLAINTEXT` (no authentication, no encryption), `SSL` (TLS, "
        "the broker verified against `AGENTGYM_KAFKA_SSL_CA`), `SASL_PLAINTEXT` or `SASL_SSL` (SASL/SCRAM as "
        "`AGENTGYM_KAFKA_USERNAME`, without or with TLS; see docs/security.md and docs/privacy.md)",
    )
    kafka_sasl_mechanism: Literal["SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "SCRAM-SHA-256",
        validation_alias=f"{PREFIX}KAFKA_SASL_MECHANISM",
        description="the SASL mechanism when the protocol is `SASL_*`: `SCRAM-SHA-256` or `SCRAM-SHA-512`",
    )
    kafka_username: str = Field(
        "",
        validation_alias=f"{PREFIX}KAFKA_USERNAME",
        description="the Kafka principal (`User:<name>`) this component authenticates as; required when the "
        "protocol is `SASL_*`, one per service (docs/security.md)",
        json_schema_extra={"doc_default": "unset"},
    )
    kafka_password: SecretStr = Field(
        SecretStr(""),
        validation_alias=f"{PREFIX}KAFKA_PASSWORD",
        description="the SCRAM password of `AGENTGYM_KAFKA_USERNAME`",
        json_schema_extra={"doc_default": "unset"},
    )
    kafka_ssl_ca: Path | None = Field(
        None,
        validation_alias=f"{PREFIX}KAFKA_SSL_CA",
        description="with `SSL`/`SASL_SSL`: a PEM file of the CA certificate(s) the broker's certificate is verified "
        "against (its host name too); unset, the system's CAs",
        json_schema_extra={"doc_default": "unset (system CAs)"},
    )
    kafka_ssl_cert: Path | None = Field(
        None,
        validation_alias=f"{PREFIX}KAFKA_SSL_CERT",
        description="with `SSL`/`SASL_SSL`: this component's client certificate (PEM, chain allowed), for a broker "
        "that requires one (mutual TLS); needs `AGENTGYM_KAFKA_SSL_KEY`",
        json_schema_extra={"doc_default": "unset (no client certificate)"},
    )
    kafka_ssl_key: Path | None = Field(
        None,
        validation_alias=f"{PREFIX}KAFKA_SSL_KEY",
        description="the unencrypted PEM private key of `AGENTGYM_KAFKA_SSL_CERT`",
        json_schema_extra={"doc_default": "unset"},
    )
    tenant_id: str = Field(
        "default",
        min_length=1,
        validation_alias=f"{PREFIX}TENANT_ID",
        description="the tenant: every event the SDK records is recorded under it; the tenant whose runs "
        "`agentgym synth generate` mines when `--tenant` is not given (non-empty)",
    )
    clickhouse_url: str = Field(
        "",
        validation_alias=f"{PREFIX}CLICKHOUSE_URL",
        description="where the tables live. `chdb:///path/to/dir`: the embedded engine (chdb), data in that directory, "
        "owned by one process (the sink), which serves reads to the others over HTTP. `http(s)://host:port`: a "
        "ClickHouse server through clickhouse-connect.",
        json_schema_extra={"doc_default": "unset (`chdb://<AGENTGYM_HOME>/clickhouse`, embedded)"},
    )
    dataset_store: str = Field(
        "",
        validation_alias=f"{PREFIX}DATASET_STORE",
        description="the dataset store: a local directory or any fsspec URL (`s3://bucket/datasets`, credentials from "
        "the usual fsspec/boto sources). The dataset builder writes finished datasets there; `agentgym train "
        "--dataset ID` looks ids up there; the trainer and its Ray workers read datasets from the URL announced, so "
        "on a cluster use storage they all reach",
        json_schema_extra={"doc_default": "unset (`<AGENTGYM_HOME>/datasets`)"},
    )

    def __init__(self, **values: Any) -> None:
        """Reads the settings (argument, then environment, then default).

        Raises:
            pydantic.ValidationError: a value is out of its range or choices; each error
                names the environment variable and the field (``AGENTGYM_TRAIN_METHOD (train_method)``).
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _naming_variables(type(self), exc) from None

    @model_validator(mode="after")
    def _shared_defaults(self) -> "SharedSettings":
        if not self.clickhouse_url:
            self.clickhouse_url = f"chdb://{self.home.expanduser().resolve() / 'clickhouse'}"
        elif not self.clickhouse_url.startswith(("chdb://", "http://", "https://")):
            raise ValueError(
                f"{PREFIX}CLICKHOUSE_URL {self.clickhouse_url!r}: allowed schemes: ['chdb', 'http', 'https']"
                " (chdb:///path/to/dir or http(s)://host:port)"
            )
        if not self.dataset_store:
            self.dataset_store = self.under_home("datasets")
        if self.kafka_security_protocol.startswith("SASL_") and not self.kafka_username:
            raise ValueError(
                f"{PREFIX}KAFKA_USERNAME (kafka_username) is required when {PREFIX}KAFKA_SECURITY_PROTOCOL is "
                f"{self.kafka_security_protocol!r}"
            )
        self._check_kafka_tls_files()
        return self

    def _check_kafka_tls_files(self) -> None:
        """The TLS files exist, are readable and fit the protocol (a file without TLS would encrypt nothing)."""
        files = {"SSL_CA": self.kafka_ssl_ca, "SSL_CERT": self.kafka_ssl_cert, "SSL_KEY": self.kafka_ssl_key}
        given = [f"{PREFIX}KAFKA_{k}" for k, v in files.items() if v is not None]
        if given and not self.kafka_security_protocol.endswith("SSL"):
            raise ValueError(
                f"{', '.join(given)} set but {PREFIX}KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol!r}: "
                "TLS files apply to `SSL` or `SASL_SSL` only"
            )
        if (self.kafka_ssl_cert is None) != (self.kafka_ssl_key is None):
            raise ValueError(f"{PREFIX}KAFKA_SSL_CERT (kafka_ssl_cert) and {PREFIX}KAFKA_SSL_KEY (kafka_ssl_key) go "
                             "together: a client certificate needs its private key")
        for name, path in files.items():
            if path is not None:
                readable_file(path, f"{PREFIX}KAFKA_{name} (kafka_{name.lower()})")

    def under_home(self, name: str) -> str:
        """The path of ``name`` under :attr:`home`, absolute."""
        return str(self.home.expanduser().resolve() / name)


class ProducerSettings(SharedSettings):
    """Read by `agentgym.AgentGym` inside agent processes (and by the HTTP gateway, which produces
    through it), and for `AGENTGYM_BOOTSTRAP_SERVERS` by `agentgym topics create`."""

    agent_id: str = Field("agent", min_length=1, description="this agent's id (non-empty)")
    spool_dir: Path = Field(
        default_factory=lambda: default_home() / "spool",
        description="local durable spool for events Kafka could not take; they are replayed from here later",
        json_schema_extra={"doc_default": "`~/.agentgym/spool`"},
    )
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="seconds Kafka may stay unreachable before an event goes to the spool (> 0)")
    spool_replay_interval_s: float = Field(5.0, gt=0, description="seconds between attempts to replay the spool (> 0)")
    schema_registry_url: str | None = Field(
        None,
        description="a Confluent-compatible Schema Registry; when set, values use the Confluent wire format instead "
        "of Avro single-object encoding. Untested, and the stream processors do not decode it yet (see the README)",
        json_schema_extra={"doc_default": "unset (no registry)"},
    )
    compression: Literal["lz4", "zstd", "snappy", "gzip", "none"] = Field(
        "lz4", description="producer compression: `lz4`, `zstd`, `snappy`, `gzip` or `none`")
    linger_ms: int = Field(20, ge=0, description="milliseconds the producer waits to fill a batch (>= 0)")
    kafka_config: dict[str, Any] = Field(
        default_factory=dict,
        description="extra librdkafka producer settings, a JSON object; unknown keys and contradictions are rejected",
        json_schema_extra={"doc_default": "`{}`"},
    )
    durability: Literal["memory", "spool"] = Field(
        "memory",
        description="`memory`: events wait in librdkafka's queue and reach the spool when the broker is found down or "
        "after the delivery timeout (an agent killed in that window loses them); `spool`: every event is written to "
        "the spool before it is sent (survives SIGKILL, costs latency)",
    )
    max_event_bytes: int = Field(
        1_000_000, ge=1000, le=1_000_000_000,
        description="largest encoded event (key included) accepted; bigger is an `InvalidEventError` at the call "
        "(librdkafka's `message.max.bytes`; keep it at or below the broker's limit) (1000 to 10^9)",
    )
    mask_enabled: bool = Field(
        True,
        description="mask personal data and secrets in the agent's process, before an event leaves it (docs/privacy.md); "
        "`false`: events go as recorded",
    )
    mask_detectors: str = Field(
        "email,phone,api_key,credit_card",
        description="comma-separated built-in detectors: `email`, `phone`, `api_key` (API keys, tokens, private keys, "
        "`password=...`), `credit_card` (Luhn-checked), `ip_address`; empty: none (custom patterns and the hook only)",
    )
    mask_fields: str = Field(
        "input,output,steps,error,comment,correction",
        description="comma-separated fields scanned: `input` (messages), `output`, `steps` (each step's input and "
        "output), `error` (the run's and the steps' errors), `comment`, `correction` (feedback), `metadata` (values)",
    )
    mask_patterns: dict[str, str] = Field(
        default_factory=dict,
        description="custom detectors, a JSON object name -> regex; a match becomes `<NAME>`",
        json_schema_extra={"doc_default": "`{}`"},
    )
    mask_hash_key: SecretStr = Field(
        SecretStr(""),
        description="when set, each placeholder carries the first 8 hex digits of HMAC-SHA256(key, value) "
        "(`<EMAIL:3f9a1c2b>`), so equal values still join; keep it secret (one per tenant)",
        json_schema_extra={"doc_default": "unset (plain placeholders)"},
    )
    follow_experiments: bool = Field(
        False,
        description="follow the live experiment configurations (a background consumer of `gym-experiments-v1`) from "
        "the moment the client starts; otherwise the first `assign()` starts it, and clients that never assign start none",
    )

    @model_validator(mode="after")
    def _masking(self) -> "ProducerSettings":
        for variable, check in ((f"{PREFIX}MASK_DETECTORS", lambda: Masker(self.mask_detectors.split(","))),
                                (f"{PREFIX}MASK_PATTERNS", lambda: Masker((), self.mask_patterns)),
                                (f"{PREFIX}MASK_FIELDS", lambda: parse_fields(self.mask_fields))):
            try:
                check()
            except MaskingConfigError as exc:
                raise ValueError(f"{variable}: {exc}") from None
        return self
