"""``compose.yaml``, the ``Dockerfile`` and ``docs/configuration.md`` against the code.

The settings classes are the source of truth for every ``AGENTGYM_*`` variable: the
stack description may only use variables they define, must wire the services to each
other at the addresses it declares itself, and the configuration reference must list
every field with its default. Nothing here needs Docker or the network.
"""

from __future__ import annotations

import ast
import base64
import importlib
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from pydantic import AliasChoices
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from agentgym.ops.configdoc import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
CONFIG_DOCS = ROOT / "docs" / "configuration.md"
PREFIX = "AGENTGYM_"

# "module:Class" of every settings class that reads AGENTGYM_* variables: the sections of the
# generated configuration reference (agentgym.ops.configdoc). A class that cannot be imported
# fails the tests below: nothing is skipped. A settings class added to the packages without
# being listed there fails test_every_settings_class_is_listed.
SETTINGS_CLASSES: tuple[str, ...] = tuple(path for _title, path in SECTIONS)

REQUIRED_SERVICES = frozenset(
    {"kafka", "topics", "clickhouse", "processors", "gateway", "ray-head", "ray-gpu-worker", "trainer", "grafana"}
)

# `agentgym <group> <command>` invocations in compose.yaml that are still being written.
# Each is an xfail(strict=True): the day the command exists its test passes, strict
# turns that into a failure, and the entry must be removed here (so the list cannot rot).
PENDING_COMMANDS: frozenset[tuple[str, str]] = frozenset()

# Ports of the clickhouse/clickhouse-server image's default configuration.
CLICKHOUSE_HTTP_PORT = 8123
CLICKHOUSE_NATIVE_PORT = 9000

DEPENDS_ON_CONDITIONS = frozenset({"service_started", "service_healthy", "service_completed_successfully"})


# --------------------------------------------------------------------------- settings


def _load(path: str) -> type[BaseSettings]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise AssertionError(f"settings class {path}: module {module_name} cannot be imported ({exc})") from exc
    cls = getattr(module, attr, None)
    assert cls is not None, f"settings class {path}: {module_name} has no attribute {attr}"
    assert isinstance(cls, type) and issubclass(cls, BaseSettings), f"{path} is not a pydantic-settings class"
    return cls


@cache
def settings_classes() -> dict[str, type[BaseSettings]]:
    return {path: _load(path) for path in SETTINGS_CLASSES}


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """Environment variable -> field name, the way pydantic-settings reads them.

    An alias replaces the prefixed name (pydantic-settings does not prefix aliases).
    """
    prefix = cls.model_config.get("env_prefix", "")
    case_sensitive = cls.model_config.get("case_sensitive", False)
    names: dict[str, str] = {}
    for field_name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            candidates = [alias]
        elif isinstance(alias, AliasChoices):
            candidates = [c for c in alias.choices if isinstance(c, str)]
        else:
            candidates = [prefix + field_name]
        for env in candidates:
            names[env if case_sensitive else env.upper()] = field_name
    return names


@cache
def known_env() -> dict[str, list[tuple[type[BaseSettings], str]]]:
    """Every AGENTGYM_* variable of every settings class -> (class, field) that reads it."""
    known: dict[str, list[tuple[type[BaseSettings], str]]] = {}
    for cls in settings_classes().values():
        for env, field_name in env_names(cls).items():
            known.setdefault(env, []).append((cls, field_name))
    return known


def field_default(cls: type[BaseSettings], field_name: str) -> Any:
    """The static default of a field, or PydanticUndefined (required, or a default_factory)."""
    field = cls.model_fields[field_name]
    return PydanticUndefined if field.default_factory is not None else field.default


# --------------------------------------------------------------------------- compose

_INTERPOLATION = re.compile(r"\$(?:\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_VAR_EXPR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?", re.DOTALL)


def _interpolate(value: str, seen: dict[str, str | None]) -> str:
    """Compose interpolation with each variable at its default (never the caller's environment).

    Records every variable in ``seen`` (name -> default, None when there is none).
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        expr = m.group(1) if m.group(1) is not None else m.group(2)
        parsed = _VAR_EXPR.fullmatch(expr)
        assert parsed, f"unsupported interpolation ${{{expr}}} in compose.yaml"
        name, op, default = parsed.groups()
        seen[name] = default if op else None
        return default if op else ""

    return _INTERPOLATION.sub(sub, value)


def _interpolate_tree(node: Any, seen: dict[str, str | None]) -> Any:
    if isinstance(node, str):
        return _interpolate(node, seen)
    if isinstance(node, list):
        return [_interpolate_tree(v, seen) for v in node]
    if isinstance(node, dict):
        return {k: _interpolate_tree(v, seen) for k, v in node.items()}
    return node


@cache
def _compose_and_vars() -> tuple[dict[str, Any], dict[str, str | None]]:
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(raw, dict) and isinstance(raw.get("services"), dict), "compose.yaml has no services mapping"
    seen: dict[str, str | None] = {}
    return _interpolate_tree(raw, seen), seen


def compose() -> dict[str, Any]:
    return _compose_and_vars()[0]


def interpolated_vars() -> dict[str, str | None]:
    return _compose_and_vars()[1]


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def service(name: str) -> dict[str, Any]:
    svc = services().get(name)
    assert svc is not None, f"compose.yaml has no service {name!r}"
    return svc


def environment(svc: dict[str, Any]) -> dict[str, str | None]:
    """A service's environment, map or list form, values as the container sees them."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {k: v for k, v in pairs}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def command_args(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return []
    return [str(c) for c in cmd] if isinstance(cmd, list) else cmd.split()


def flag(args: list[str], name: str) -> str | None:
    """The value of ``--name=value`` or ``--name value`` in a command line."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(args):
            return args[i + 1]
    return None


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"{address!r} is not host:port"
    return host, int(port)


def published_ports(svc: dict[str, Any]) -> list[tuple[str, int | None, int, str]]:
    """(host ip, host port or None, container port, protocol) of each `ports` entry."""
    out = []
    for entry in svc.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            out.append((entry.get("host_ip", ""), int(published) if published else None,
                        int(entry["target"]), entry.get("protocol", "tcp")))
            continue
        spec, _, proto = str(entry).partition("/")
        parts = spec.split(":")
        assert all("-" not in p for p in parts), f"port ranges are not used here: {entry!r}"
        if len(parts) == 1:
            out.append(("", None, int(parts[0]), proto or "tcp"))
        elif len(parts) == 2:
            out.append(("", int(parts[0]) if parts[0] else None, int(parts[1]), proto or "tcp"))
        else:
            out.append((":".join(parts[:-2]), int(parts[-2]) if parts[-2] else None, int(parts[-1]), proto or "tcp"))
    return out


def container_ports(svc: dict[str, Any]) -> set[int]:
    return {p[2] for p in published_ports(svc)} | {int(str(e).split("/")[0]) for e in svc.get("expose") or []}


def kafka_listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)} (an empty host binds every interface)."""
    out = {}
    for item in value.split(","):
        name, sep, address = item.strip().partition("://")
        assert sep, f"listener {item!r} is not NAME://host:port"
        out[name] = host_port(address) if not address.startswith(":") else ("", int(address[1:]))
    return out


def kafka_env(name: str = "kafka") -> dict[str, str | None]:
    return environment(service(name))


def kafka_nodes() -> list[str]:
    """The Kafka services (the apache/kafka image), ``kafka`` first."""
    return sorted((n for n, svc in services().items() if str(svc.get("image", "")).startswith("apache/kafka:")),
                  key=lambda n: (n != "kafka", n))


def internal_bootstrap() -> str:
    """host:port,... of the brokers for the other containers, from their advertised listeners."""
    out = []
    for name in kafka_nodes():
        env = kafka_env(name)
        advertised = kafka_listeners(env["KAFKA_ADVERTISED_LISTENERS"] or "")
        internal = env.get("KAFKA_INTER_BROKER_LISTENER_NAME")
        assert internal in advertised, f"{name}: the inter-broker listener {internal!r} is not advertised: {advertised}"
        host, port = advertised[internal]
        out.append(f"{host}:{port}")
    return ",".join(out)


def external_listener() -> tuple[str, tuple[str, int], tuple[str, int]]:
    """(name, advertised (host, port), bound (host, port)) of the listener the host uses."""
    env = kafka_env()
    advertised = kafka_listeners(env["KAFKA_ADVERTISED_LISTENERS"] or "")
    bound = kafka_listeners(env["KAFKA_LISTENERS"] or "")
    internal = env.get("KAFKA_INTER_BROKER_LISTENER_NAME")
    external = [name for name in advertised if name != internal]
    assert len(external) == 1, f"expected one listener besides {internal!r} for the host, got {external}"
    name = external[0]
    assert name in bound, f"advertised listener {name} is not in KAFKA_LISTENERS"
    return name, advertised[name], bound[name]


def agentgym_service_env() -> Iterator[tuple[str, str, str | None]]:
    for name, svc in services().items():
        for key, value in environment(svc).items():
            if key.upper().startswith(PREFIX):
                yield name, key, value


# --------------------------------------------------------------------------- tests: settings


@pytest.mark.parametrize("path", SETTINGS_CLASSES)
def test_settings_class_exists_and_reads_the_agentgym_prefix(path: str) -> None:
    cls = _load(path)
    assert str(cls.model_config.get("env_prefix")).startswith(PREFIX), f"{path} must read {PREFIX}* variables"
    assert env_names(cls), f"{path} has no fields"


def test_every_settings_class_is_listed() -> None:
    """Every ``class X(BaseSettings)`` in the project's packages is in SETTINGS_CLASSES."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = {name: folder for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items() if name != "agentgym"}
    found = set()
    for package, folder in package_dirs.items():
        for file in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
            for node in ast.walk(tree):
                # BaseSettings itself, or a settings class extending another (SharedSettings)
                if isinstance(node, ast.ClassDef) and any(
                    (isinstance(b, ast.Name) and b.id.endswith("Settings"))
                    or (isinstance(b, ast.Attribute) and b.attr.endswith("Settings"))
                    for b in node.bases
                ):
                    module = ".".join((package, *file.relative_to(ROOT / folder).with_suffix("").parts)).removesuffix(".__init__")
                    found.add(f"{module}:{node.name}")
    unlisted = sorted(found - set(SETTINGS_CLASSES))
    assert not unlisted, f"settings classes missing from SETTINGS_CLASSES (and so from these checks): {unlisted}"


# --------------------------------------------------------------------------- tests: compose shape


def test_required_services_exist() -> None:
    missing = REQUIRED_SERVICES - set(services())
    assert not missing, f"compose.yaml lacks services: {sorted(missing)}"


def test_every_agentgym_variable_in_services_is_a_settings_field() -> None:
    known = known_env()
    used = list(agentgym_service_env())
    assert used, "no service sets any AGENTGYM_* variable"
    unknown = sorted({f"{svc}: {key}" for svc, key, _ in used if key.upper() not in known})
    assert not unknown, f"AGENTGYM_* variables that no settings class reads: {unknown}"


def test_interpolated_agentgym_variables_are_settings_fields_with_the_same_default() -> None:
    known = known_env()
    for name, default in interpolated_vars().items():
        if not name.upper().startswith(PREFIX):
            continue
        assert name.upper() in known, f"${{{name}}} in compose.yaml is not a settings field"
        assert default is not None, f"${{{name}}} needs a default (`${{{name}:-...}}`)"
        for cls, field_name in known[name.upper()]:
            expected = field_default(cls, field_name)
            assert expected is not PydanticUndefined and str(expected) == default, (
                f"${{{name}:-{default}}} in compose.yaml, but {cls.__name__}.{field_name} defaults to {expected!r}"
            )


def test_every_interpolation_has_a_default() -> None:
    # `docker compose up` then works without a .env file; only secrets are meant to be overridden
    bare = sorted(name for name, default in interpolated_vars().items() if default is None)
    assert not bare, f"variables interpolated without a default: {bare}"


def test_environment_values_are_strings_or_numbers() -> None:
    # Compose rejects YAML booleans in `environment`; they must be quoted
    raw = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    for name, svc in raw["services"].items():
        env = svc.get("environment") or {}
        if isinstance(env, dict):
            bad = [k for k, v in env.items() if isinstance(v, bool) or isinstance(v, (list, dict))]
            assert not bad, f"{name}: quote these environment values: {bad}"


def test_depends_on_refers_to_defined_services_with_valid_conditions() -> None:
    defined = set(services())
    for name, svc in services().items():
        deps = svc.get("depends_on") or {}
        items = {d: {"condition": "service_started"} for d in deps} if isinstance(deps, list) else deps
        for dep, spec in items.items():
            assert dep in defined, f"{name} depends on undefined service {dep!r}"
            assert dep != name, f"{name} depends on itself"
            condition = (spec or {}).get("condition", "service_started")
            assert condition in DEPENDS_ON_CONDITIONS, f"{name} -> {dep}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert services()[dep].get("healthcheck"), f"{name} waits for {dep} to be healthy; {dep} has no healthcheck"
            if condition == "service_completed_successfully":
                restart = str(services()[dep].get("restart", "no"))
                assert restart == "no", f"{name} waits for {dep} to complete, so {dep} must not restart"


def test_depends_on_has_no_cycle() -> None:
    graph = {n: set(s.get("depends_on") or ()) for n, s in services().items()}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"depends_on cycle: {' -> '.join(path + (node,))}"
        if node in done:
            return
        for dep in graph.get(node, ()):
            visit(dep, path + (node,))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_host_ports_are_unique() -> None:
    seen: dict[tuple[int, str], str] = {}
    for name, svc in services().items():
        for _ip, published, _target, proto in published_ports(svc):
            if published is None:
                continue
            key = (published, proto)
            assert key not in seen, f"host port {published}/{proto} published by both {seen[key]} and {name}"
            seen[key] = name
    assert seen, "no service publishes a port on the host"


def test_scaled_services_publish_no_fixed_host_port() -> None:
    for name, svc in services().items():
        replicas = int((svc.get("deploy") or {}).get("replicas", 1))
        fixed = [p for p in published_ports(svc) if p[1] is not None]
        assert replicas <= 1 or not fixed, f"{name} runs {replicas} replicas, which cannot share host ports {fixed}"
        assert replicas <= 1 or "container_name" not in svc, f"{name} runs {replicas} replicas under one container_name"


def test_processors_scale_with_deploy_replicas_within_the_partitions() -> None:
    from agentgym.schemas.topics import TOPICS

    replicas = (service("processors").get("deploy") or {}).get("replicas")
    assert isinstance(replicas, int) and replicas >= 1, "processors must set deploy.replicas"
    most = max(spec.partitions for spec in TOPICS.values())
    # a Faust worker beyond the partition count of the busiest topic gets no partition
    assert replicas <= most, f"{replicas} processors replicas, but topics have at most {most} partitions"


def test_services_that_publish_ports_have_healthchecks() -> None:
    for name, svc in services().items():
        if published_ports(svc):
            hc = svc.get("healthcheck") or {}
            assert hc.get("test") and not hc.get("disable"), f"{name} serves ports but has no healthcheck"


def test_bind_mounts_exist_in_the_repository() -> None:
    for name, svc in services().items():
        for vol in svc.get("volumes") or []:
            source = vol.get("source", "") if isinstance(vol, dict) else str(vol).split(":")[0]
            if source.startswith(("./", "../", "/")):
                assert (ROOT / source).resolve().exists(), f"{name} mounts {source}, which is not in the repository"
            elif source:
                assert source in (compose().get("volumes") or {}), f"{name} uses undeclared volume {source!r}"


def test_project_services_build_from_the_dockerfile() -> None:
    built = {name: svc for name, svc in services().items() if svc.get("build")}
    assert {"topics", "processors", "gateway", "trainer"} <= set(built), f"services built here: {sorted(built)}"
    images = {svc.get("image") for svc in built.values()}
    assert len(images) == 1, f"the project's services should share one image tag, got {images}"
    for name, svc in built.items():
        build = svc["build"]
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        assert (context / dockerfile).is_file(), f"{name} builds from {context / dockerfile}, which does not exist"


# --------------------------------------------------------------------------- tests: Kafka


def test_kafka_image_is_apache_kafka_4_and_matches_the_local_stack() -> None:
    from agentgym.ops.settings import StackSettings

    image = service("kafka").get("image", "")
    m = re.fullmatch(r"apache/kafka:(\d+)\.(\d+)\.(\d+)", image)
    assert m, f"kafka image {image!r} is not apache/kafka:<major>.<minor>.<patch>"
    assert m.group(1) == "4", f"kafka image {image!r} is not a 4.x version"
    local = StackSettings.model_fields["kafka_version"].default
    assert image.split(":")[1] == local, f"compose runs Kafka {image}, the local stack {local}"


def test_kafka_runs_in_kraft_mode_without_zookeeper() -> None:
    env = kafka_env()
    roles = {r.strip() for r in (env.get("KAFKA_PROCESS_ROLES") or "").split(",")}
    assert roles == {"broker", "controller"}, f"KAFKA_PROCESS_ROLES is {roles}"
    # anywhere in the stack's content (keys and values; comments may say "no ZooKeeper")
    assert "zookeeper" not in yaml.safe_dump(compose()).lower(), "compose.yaml configures ZooKeeper"
    # the image exits on these deprecated keys
    assert not {"KAFKA_PORT", "KAFKA_HOST", "KAFKA_ADVERTISED_PORT", "KAFKA_ADVERTISED_HOST"} & set(env)

    cluster_id = env.get("CLUSTER_ID") or ""
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, f"CLUSTER_ID {cluster_id!r} is not a base64 UUID"

    bound = kafka_listeners(env["KAFKA_LISTENERS"] or "")
    controller_names = (env.get("KAFKA_CONTROLLER_LISTENER_NAMES") or "").split(",")
    assert controller_names and all(n in bound for n in controller_names), "the controller listener is not bound"
    # three nodes, each a voter of one quorum: the voters are the Kafka services, by node id and host name
    nodes = kafka_nodes()
    assert len(nodes) == 3, f"three Kafka nodes, got {nodes}"
    voters = dict(v.partition("@")[::2] for v in (env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") or "").split(","))
    assert len(voters) == 3, f"three voters: {voters}"
    for name in nodes:
        node_env = kafka_env(name)
        assert node_env.get("KAFKA_CONTROLLER_QUORUM_VOTERS") == env.get("KAFKA_CONTROLLER_QUORUM_VOTERS"), name
        assert node_env.get("CLUSTER_ID") == cluster_id, f"{name} formats another cluster id"
        node_id = str(node_env.get("KAFKA_NODE_ID"))
        assert node_id in voters, f"{name}: node id {node_id} is not a voter of {voters}"
        host, port = host_port(voters[node_id])
        assert host in {name, service(name).get("hostname")}, f"voter {node_id}@{host} is not the {name} service"
        assert port == kafka_listeners(node_env["KAFKA_LISTENERS"] or "")[controller_names[0]][1], \
            f"voter {node_id}'s port is not {name}'s controller listener"
        advertised = kafka_listeners(node_env["KAFKA_ADVERTISED_LISTENERS"] or "")
        assert advertised[str(node_env["KAFKA_INTER_BROKER_LISTENER_NAME"])][0] == service(name).get("hostname", name)
    assert len({str(kafka_env(n).get("KAFKA_NODE_ID")) for n in nodes}) == 3, "node ids are not distinct"

    protocols = dict(item.split(":") for item in (env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") or "").split(","))
    assert set(bound) <= set(protocols), f"listeners without a security protocol: {set(bound) - set(protocols)}"


def test_kafka_three_node_replication_and_no_auto_topic_creation() -> None:
    from agentgym.schemas.topics import replication_for

    rf, min_isr = replication_for(len(kafka_nodes()))
    assert (rf, min_isr) == (3, 2)
    for name in kafka_nodes():
        env = kafka_env(name)
        assert (env.get("KAFKA_AUTO_CREATE_TOPICS_ENABLE") or "").lower() == "false"
        for required in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                         "KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_MIN_INSYNC_REPLICAS"):
            assert required in env, f"{name}: {required} must be set"
        for key, value in env.items():
            if key.endswith("REPLICATION_FACTOR"):
                assert value == str(rf), f"{name}: {key}={value}, the topics get {rf} replicas"
            elif key.endswith("MIN_ISR") or key == "KAFKA_MIN_INSYNC_REPLICAS":
                assert value == str(min_isr), f"{name}: {key}={value}, the topics need {min_isr} in sync"
    # the topics job waits for every node, so replication follows the whole cluster
    command = " ".join(service("topics")["command"])
    assert f"agentgym topics create --brokers {len(kafka_nodes())}" in command
    assert set(kafka_nodes()) <= set(service("topics")["depends_on"]), "the topics job does not wait for every node"


def test_services_reach_kafka_at_its_internal_listener() -> None:
    bootstrap = internal_bootstrap()
    for name, address in zip(kafka_nodes(), bootstrap.split(",")):
        host, port = host_port(address)
        assert host in {name, service(name).get("hostname")}, f"internal listener host {host} is not the {name} service"
        bound = kafka_listeners(kafka_env(name)["KAFKA_LISTENERS"] or "")
        internal = kafka_env(name).get("KAFKA_INTER_BROKER_LISTENER_NAME") or ""
        assert bound[internal][1] == port, f"{name}: internal listener advertised on another port"

    users = {svc: value for svc, key, value in agentgym_service_env() if key.upper() == "AGENTGYM_BOOTSTRAP_SERVERS"}
    assert {"topics", "processors", "gateway", "trainer"} <= set(users), f"services given bootstrap servers: {sorted(users)}"
    wrong = {svc: value for svc, value in users.items() if value != bootstrap}
    assert not wrong, f"AGENTGYM_BOOTSTRAP_SERVERS must be {bootstrap}: {wrong}"


def test_kafka_host_port_is_the_local_stacks_default_port() -> None:
    from agentgym.ops.settings import StackSettings
    from agentgym.producers.settings import ProducerSettings

    _name, (adv_host, adv_port), (_bind_host, bind_port) = external_listener()
    published = {target: host for _ip, host, target, _proto in published_ports(service("kafka"))}
    assert bind_port in published, f"the host listener's port {bind_port} is not published"
    kafka_port = StackSettings.model_fields["kafka_port"].default
    assert published[bind_port] == kafka_port, f"kafka on host port {published[bind_port]}, StackSettings says {kafka_port}"
    assert adv_port == published[bind_port], "the host listener advertises a port other than the published one"
    # an agent on the host with default settings reaches this broker
    default_bootstrap = ProducerSettings.model_fields["bootstrap_servers"].default
    assert f"{adv_host}:{adv_port}" == default_bootstrap, f"host listener {adv_host}:{adv_port}, SDK default {default_bootstrap}"


def test_kafka_takes_sasl_scram_only_and_every_service_has_its_own_principal() -> None:
    from agentgym.ops.kafka.acls import ADMIN, PRINCIPALS, SERVICE_GRANTS

    env = kafka_env()
    protocols = dict(item.split(":") for item in (env.get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP") or "").split(","))
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, f"a listener without authentication: {protocols}"
    assert env.get("KAFKA_AUTHORIZER_CLASS_NAME") == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env.get("KAFKA_SUPER_USERS") == f"User:{ADMIN}"
    assert str(env.get("KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND")).lower() == "false"
    # the entrypoint formats the volume with a SCRAM credential for every principal
    script = (ROOT / "ops" / "kafka" / "compose-entrypoint.sh").read_text()
    assert f"for principal in {' '.join(PRINCIPALS)}; do" in script
    assert {f"SCRAM_{p.upper()}_PASSWORD" for p in PRINCIPALS} <= set(env)

    users: dict[str, str] = {}
    for name, svc in services().items():
        e = environment(svc)
        if "AGENTGYM_BOOTSTRAP_SERVERS" not in e:
            continue
        assert e.get("AGENTGYM_KAFKA_SECURITY_PROTOCOL") == "SASL_PLAINTEXT", f"{name} connects without SASL"
        assert e.get("AGENTGYM_KAFKA_USERNAME") in PRINCIPALS, f"{name}: unknown principal {e.get('AGENTGYM_KAFKA_USERNAME')}"
        assert e.get("AGENTGYM_KAFKA_PASSWORD") == env[f"SCRAM_{str(e['AGENTGYM_KAFKA_USERNAME']).upper()}_PASSWORD"], name
        users[name] = str(e["AGENTGYM_KAFKA_USERNAME"])
    assert users == {"topics": ADMIN, "processors": "processors", "gateway": "gateway", "trainer": "trainer"}
    assert set(users.values()) - {ADMIN} <= set(SERVICE_GRANTS)
    assert "agentgym kafka acls" in " ".join(service("topics")["command"]), "the topics job does not grant the ACLs"


# --------------------------------------------------------------------------- tests: ClickHouse, Grafana


def test_clickhouse_url_points_at_the_clickhouse_http_port() -> None:
    ch = service("clickhouse")
    assert re.fullmatch(r"clickhouse/clickhouse-server:25\.\d+(\.\d+)*", ch.get("image", "")), ch.get("image")
    assert CLICKHOUSE_HTTP_PORT in container_ports(ch), "the clickhouse service does not expose its HTTP port"
    ch_env = environment(ch)

    from agentgym.processors.store.settings import StoreSettings

    users = [name for name, svc in services().items() if "AGENTGYM_CLICKHOUSE_URL" in environment(svc)]
    assert {"processors", "trainer"} <= set(users), f"services given AGENTGYM_CLICKHOUSE_URL: {users}"
    default_database = StoreSettings.model_fields["clickhouse_database"].default
    for name in users:
        env = environment(services()[name])
        value = env["AGENTGYM_CLICKHOUSE_URL"] or ""
        url = urlsplit(value)
        assert url.scheme == "http", f"{name}: {value} is not an http:// URL"
        assert url.hostname == "clickhouse", f"{name}: {value} does not point at the clickhouse service"
        assert url.port == CLICKHOUSE_HTTP_PORT, f"{name}: {value} is not on the HTTP port {CLICKHOUSE_HTTP_PORT}"
        # what the store will log in with: its own variable, else the URL's, else the default
        user = env.get("AGENTGYM_CLICKHOUSE_USER") or (unquote(url.username) if url.username else "default")
        password = env.get("AGENTGYM_CLICKHOUSE_PASSWORD") or unquote(url.password or "")
        database = env.get("AGENTGYM_CLICKHOUSE_DATABASE") or default_database
        assert user == ch_env.get("CLICKHOUSE_USER", "default"), f"{name}: user {user} is not the server's"
        assert password == (ch_env.get("CLICKHOUSE_PASSWORD") or ""), f"{name}: password differs from the server's"
        assert database == ch_env.get("CLICKHOUSE_DB", "default"), f"{name}: database {database} is not the server's"


def test_clickhouse_keeps_its_data_on_a_volume() -> None:
    volumes = service("clickhouse").get("volumes") or []
    mounts = [v.get("target") if isinstance(v, dict) else str(v).split(":")[1] for v in volumes]
    assert "/var/lib/clickhouse" in mounts


def _grafana_datasources() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for vol in service("grafana").get("volumes") or []:
        source, target = (vol["source"], vol["target"]) if isinstance(vol, dict) else str(vol).split(":")[:2]
        if not source.startswith("./") or "provisioning" not in target:
            continue
        base = ROOT / source
        for file in sorted(base.rglob("*.y*ml")) if base.is_dir() else [base]:
            doc = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
            found.extend(doc.get("datasources") or [])
    return found


def test_grafana_provisions_a_clickhouse_datasource_for_the_clickhouse_service() -> None:
    graf = service("grafana")
    assert 3000 in container_ports(graf), "grafana does not expose 3000"
    env = environment(graf)
    sources = [d for d in _grafana_datasources() if d.get("type") == "grafana-clickhouse-datasource"]
    assert len(sources) == 1, f"expected one provisioned ClickHouse data source, got {sources}"
    plugin_vars = ("GF_PLUGINS_PREINSTALL_SYNC", "GF_PLUGINS_PREINSTALL", "GF_INSTALL_PLUGINS")
    plugins = ",".join(env.get(k) or "" for k in plugin_vars)
    assert "grafana-clickhouse-datasource" in plugins, "the ClickHouse plugin is not installed"

    data = sources[0].get("jsonData") or {}
    ch = service("clickhouse")
    ch_env = environment(ch)
    assert data.get("host") == "clickhouse"
    expected_port = CLICKHOUSE_NATIVE_PORT if data.get("protocol") == "native" else CLICKHOUSE_HTTP_PORT
    assert data.get("port") == expected_port and expected_port in container_ports(ch), f"data source port {data.get('port')}"
    assert data.get("username") == ch_env.get("CLICKHOUSE_USER", "default")
    assert data.get("defaultDatabase", "default") == ch_env.get("CLICKHOUSE_DB", "default")
    password = (sources[0].get("secureJsonData") or {}).get("password", "")
    m = re.fullmatch(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", password)
    assert m, "the data source password should come from grafana's environment, not the file"
    assert env.get(m.group(1)) == ch_env.get("CLICKHOUSE_PASSWORD"), "grafana and clickhouse disagree on the password"


# --------------------------------------------------------------------------- tests: Ray


def test_ray_head_and_trainer_address() -> None:
    head = service("ray-head")
    args = command_args(head)
    assert args[:2] == ["ray", "start"] and "--head" in args, f"ray-head runs {args}"
    client_port = int(flag(args, "--ray-client-server-port") or 10001)
    dashboard_port = int(flag(args, "--dashboard-port") or 8265)
    published = {target for _ip, _host, target, _proto in published_ports(head)}
    assert {client_port, dashboard_port} <= published, f"ray-head publishes {published}"
    assert client_port == 10001 and dashboard_port == 8265
    assert flag(args, "--dashboard-host") == "0.0.0.0", "the dashboard must listen beyond the container's loopback"

    trainer = service("trainer")
    assert command_args(trainer)[:3] == ["agentgym", "trainer", "run"]
    address = urlsplit(environment(trainer).get("RAY_ADDRESS") or "")
    assert (address.scheme, address.hostname, address.port) == ("ray", "ray-head", client_port), address.geturl()


def test_gpu_worker_reserves_an_nvidia_gpu_and_joins_the_head() -> None:
    worker = service("ray-gpu-worker")
    devices = (((worker.get("deploy") or {}).get("resources") or {}).get("reservations") or {}).get("devices") or []
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in (d.get("capabilities") or [])]
    assert gpus, f"ray-gpu-worker reserves no nvidia GPU: {devices}"
    assert all(d.get("count", "all") == "all" or int(d["count"]) >= 1 or d.get("device_ids") for d in gpus)

    args = command_args(worker)
    assert args[:2] == ["ray", "start"] and "--head" not in args
    address = flag(args, "--address")
    assert address, "the GPU worker does not name the head"
    head_port = int(flag(command_args(service("ray-head")), "--port") or 6379)
    assert host_port(address) == ("ray-head", head_port), f"worker joins {address}, the head's GCS is ray-head:{head_port}"
    deps = worker.get("depends_on") or {}
    assert "ray-head" in deps


# --------------------------------------------------------------------------- tests: CLI commands


def _agentgym_commands() -> list[tuple[str, list[str]]]:
    return [(name, command_args(svc)) for name, svc in services().items() if command_args(svc)[:1] == ["agentgym"]]


def _command_params() -> list[Any]:
    params = []
    for name, args in _agentgym_commands():
        pending = tuple(args[1:3]) in PENDING_COMMANDS
        reason = f"`agentgym {' '.join(args[1:3])}` is not written yet"
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if pending else []
        params.append(pytest.param(name, args, marks=marks, id=name))
    return params


@pytest.mark.parametrize(("name", "args"), _command_params())
def test_agentgym_commands_in_compose_exist_and_accept_their_options(name: str, args: list[str]) -> None:
    import click

    from agentgym.ops.cli import main

    assert len(args) >= 3, f"{name}: {args} names no sub-command"
    ctx = click.Context(main)
    group = main.get_command(ctx, args[1])
    assert isinstance(group, click.Group), f"`agentgym {args[1]}` is not a command group"
    command = group.get_command(ctx, args[2])
    assert command is not None, f"`agentgym {args[1]} {args[2]}` does not exist"
    # parses the options compose passes (unknown ones raise), without running anything
    command.make_context(args[2], list(args[3:]), parent=ctx)


# --------------------------------------------------------------------------- tests: Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    assert DOCKERFILE.is_file(), f"{DOCKERFILE} is missing"
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_dockerfile_installs_the_all_extra() -> None:
    runs = [rest for keyword, rest in _dockerfile_instructions() if keyword == "RUN"]
    assert any(re.search(r"pip\S* install\b[^&;|]*?\s[\"']?\.\[all\][\"']?(\s|$)", r) for r in runs), (
        f"no RUN installs the package with its [all] extra: {runs}"
    )


def test_dockerfile_base_is_python_slim_within_requires_python() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    bases = [rest.split()[0] for keyword, rest in _dockerfile_instructions() if keyword == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        m = re.fullmatch(r"python:(\d+\.\d+)-slim", base)
        assert m, f"base image {base} is not python:<version>-slim"
        assert m.group(1) in SpecifierSet(pyproject["project"]["requires-python"]), f"{base} outside requires-python"
    assert bases[-1] == "python:3.11-slim"


def test_dockerfile_copies_every_package_it_installs() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = set(pyproject["tool"]["setuptools"]["package-dir"].values())
    copied: set[str] = set()
    for keyword, rest in _dockerfile_instructions():
        if keyword == "COPY" and "--from" not in rest:
            sources = [s for s in rest.split()[:-1] if not s.startswith("--")]
            copied |= {s.strip("./") or "." for s in sources}
    assert "." in copied or packages <= copied, f"packages never copied into the build: {sorted(packages - copied)}"
    assert "." in copied or "pyproject.toml" in copied


# --------------------------------------------------------------------------- tests: docs/configuration.md
# The reference is generated from the classes (tests/unit/ops/test_configdoc.py keeps it in
# sync), so every field is documented with its default by construction; what remains to
# check is the hand-written text around the tables.


def test_docs_list_no_agentgym_variable_outside_the_settings() -> None:
    text = CONFIG_DOCS.read_text(encoding="utf-8")
    mentioned = set(re.findall(r"\bAGENTGYM_[A-Z0-9_]+\b", text))
    known = set(known_env())
    assert mentioned, "docs/configuration.md names no variable"
    assert not (mentioned - known), f"docs/configuration.md mentions unknown variables: {sorted(mentioned - known)}"
