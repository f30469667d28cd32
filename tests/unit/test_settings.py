"""The settings classes: one shared base, precedence, and every enum-like value checked at start."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from agentgym.gateway.settings import GatewaySettings
from agentgym.ops import settings as ops_settings
from agentgym.ops.configdoc import SECTIONS
from agentgym.ops.settings import StackSettings
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.processors.experiments.settings import ExperimentSettings
from agentgym.processors.labelling.settings import LabellerSettings
from agentgym.processors.settings import ProcessorSettings
from agentgym.processors.store import settings as store_settings
from agentgym.processors.store.settings import StoreSettings
from agentgym.producers.settings import ProducerSettings, SharedSettings, default_home, parse_choices
from agentgym.trainers import settings as trainer_settings
from agentgym.trainers.settings import GateSettings, TrainerServiceSettings, TrainSettings
from agentgym.trainers.synth.settings import SynthSettings


def _classes() -> list[type[BaseSettings]]:
    out = []
    for _title, path in SECTIONS:
        module, _, name = path.partition(":")
        out.append(getattr(__import__(module, fromlist=[name]), name))
    return out


# --------------------------------------------------------------------------- one base


def test_every_component_extends_the_shared_base_and_declares_no_shared_field_again() -> None:
    shared = set(SharedSettings.model_fields)
    components = [cls for cls in _classes() if cls is not SharedSettings]
    assert len(components) == len(SECTIONS) - 1
    for cls in components:
        assert issubclass(cls, SharedSettings), f"{cls.__name__} does not extend SharedSettings"
        # the gateway also reads the broker address under its own prefix (documented exception)
        allowed = {"bootstrap_servers"} if cls is GatewaySettings else set()
        redeclared = (shared & set(vars(cls).get("__annotations__", {}))) - allowed
        assert not redeclared, f"{cls.__name__} declares shared fields again: {sorted(redeclared)}"


def test_one_default_home() -> None:
    assert store_settings.default_home is ops_settings.default_home is trainer_settings.default_home is default_home


@pytest.mark.parametrize("cls", [ProducerSettings, LabellerSettings, StoreSettings, TrainerServiceSettings, StackSettings])
def test_shared_fields_precedence_argument_then_environment_then_default(
    cls: type[SharedSettings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AGENTGYM_HOME")
    assert cls().home == default_home() and cls().bootstrap_servers == "127.0.0.1:9092"
    # the labeller's own prefix (AGENTGYM_LABELLER_) does not rename the shared variables
    monkeypatch.setenv("AGENTGYM_HOME", str(tmp_path / "env"))
    monkeypatch.setenv("AGENTGYM_BOOTSTRAP_SERVERS", "env:1")
    monkeypatch.setenv("AGENTGYM_TENANT_ID", "acme")
    s = cls()
    assert (s.home, s.bootstrap_servers, s.tenant_id) == (tmp_path / "env", "env:1", "acme")
    assert s.clickhouse_url == f"chdb://{(tmp_path / 'env' / 'clickhouse').resolve()}"
    assert s.dataset_store == str((tmp_path / "env" / "datasets").resolve())
    s = cls(home=tmp_path / "arg", bootstrap_servers="arg:2")
    assert (s.home, s.bootstrap_servers) == (tmp_path / "arg", "arg:2")
    assert s.clickhouse_url == f"chdb://{(tmp_path / 'arg' / 'clickhouse').resolve()}"


def test_labeller_reads_its_own_fields_under_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTGYM_LABELLER_TICK_S", "2.5")
    monkeypatch.setenv("AGENTGYM_TICK_S", "9")
    assert LabellerSettings().tick_s == 2.5


def test_directories_under_home_follow_it(tmp_path: Path) -> None:
    train = TrainSettings(home=tmp_path)
    assert train.model_store == str(tmp_path.resolve() / "models")
    assert train.train_checkpoint_store == str(tmp_path.resolve() / "ray-runs")
    assert TrainerServiceSettings(home=tmp_path).trainer_jobs_dir == str(tmp_path.resolve() / "trainer/jobs")
    assert DatasetSettings(home=tmp_path, dataset_store="s3://b/d").dataset_store == "s3://b/d"


# --------------------------------------------------------------------------- enum-like values

# (class, environment variable, a bad value, what the error must name, words the message must hold)
BAD_VALUES = [
    (TrainerServiceSettings, "AGENTGYM_TRAINER_KINDS", "sft,sftt", "AGENTGYM_TRAINER_KINDS", ["'sftt'", "sft", "preference"]),
    (ExperimentSettings, "AGENTGYM_EXPERIMENTS_RATING_SOURCES", "humna", "AGENTGYM_EXPERIMENTS_RATING_SOURCES",
     ["'humna'", "human", "ai", "system"]),
    (ProcessorSettings, "AGENTGYM_PROCESSORS", "sink,labeler", "AGENTGYM_PROCESSORS", ["'labeler'", "labeller", "datasets"]),
    (ProcessorSettings, "AGENTGYM_FAUST_STORE", "redis://x", "AGENTGYM_FAUST_STORE", ["memory://", "rocksdb://"]),
    (DatasetSettings, "AGENTGYM_DATASET_SCRUB", "email,ssn", "AGENTGYM_DATASET_SCRUB", ["'ssn'", "credit_card"]),
    (GateSettings, "AGENTGYM_GATE_EVALUATOR", "exact", "AGENTGYM_GATE_EVALUATOR", ["exact_match", "module:function"]),
    (SynthSettings, "AGENTGYM_SYNTH_MIX", '{"paraphrase": 1, "nonsense": 1}', "AGENTGYM_SYNTH_MIX", ["nonsense", "domain"]),
    (StoreSettings, "AGENTGYM_CLICKHOUSE_URL", "mysql://h:1", "AGENTGYM_CLICKHOUSE_URL", ["chdb", "https"]),
    (StoreSettings, "AGENTGYM_CLICKHOUSE_DATABASE", "a-b", "AGENTGYM_CLICKHOUSE_DATABASE", ["identifier"]),
    (StackSettings, "AGENTGYM_KAFKA_HEAP", "512 MB", "AGENTGYM_KAFKA_HEAP", ["[kKmMgG]"]),
    # Literal fields: pydantic lists the choices, the base class names the variable
    (ProducerSettings, "AGENTGYM_COMPRESSION", "brotli", "AGENTGYM_COMPRESSION", ["'lz4'", "'zstd'", "'none'"]),
    (ProducerSettings, "AGENTGYM_DURABILITY", "disk", "AGENTGYM_DURABILITY", ["'memory'", "'spool'"]),
    (TrainSettings, "AGENTGYM_TRAIN_METHOD", "ppo", "AGENTGYM_TRAIN_METHOD", ["'auto'", "'sft'", "'dpo'"]),
    (TrainSettings, "AGENTGYM_TRAIN_USE_GPU", "maybe", "AGENTGYM_TRAIN_USE_GPU", ["'auto'", "'yes'", "'no'"]),
    (TrainSettings, "AGENTGYM_TRAIN_PACKING", "on", "AGENTGYM_TRAIN_PACKING", ["'auto'", "'yes'", "'no'"]),
    (TrainSettings, "AGENTGYM_TRAIN_BF16", "true", "AGENTGYM_TRAIN_BF16", ["'auto'", "'yes'", "'no'"]),
    (ExperimentSettings, "AGENTGYM_EXPERIMENTS_CORRECTION", "sidak", "AGENTGYM_EXPERIMENTS_CORRECTION", ["'holm'", "'bonferroni'"]),
    (LabellerSettings, "AGENTGYM_LABELLER_DRIFT_SOURCES", "human", "AGENTGYM_LABELLER_DRIFT_SOURCES", ["'independent'", "'all'"]),
]


@pytest.mark.parametrize(("cls", "variable", "value", "named", "words"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_an_unknown_value_fails_at_start_naming_the_setting_and_the_allowed_values(
    cls: type[BaseSettings], variable: str, value: str, named: str, words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as info:
        cls()
    message = str(info.value)
    assert named in message, message
    for word in words:
        assert word in message, f"{word!r} not in {message}"


@pytest.mark.parametrize(
    ("cls", "variable", "value", "attribute", "expected"),
    [
        (TrainerServiceSettings, "AGENTGYM_TRAINER_KINDS", " preference , synthetic", "kinds", {"preference", "synthetic"}),
        (ExperimentSettings, "AGENTGYM_EXPERIMENTS_RATING_SOURCES", "human,ai", "rating_sources", ["human", "ai"]),
        (ProcessorSettings, "AGENTGYM_PROCESSORS", "sink", "enabled", {"sink"}),
        (DatasetSettings, "AGENTGYM_DATASET_SCRUB", "", "scrubbers", []),
    ],
)
def test_known_values_are_accepted(
    cls: type[BaseSettings], variable: str, value: str, attribute: str, expected: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    assert getattr(cls(), attribute) == expected


def test_gate_evaluator_accepts_builtins_and_module_function() -> None:
    for value in ("", "exact_match", "contains_reference", "my.pkg:score"):
        assert GateSettings(gate_evaluator=value).gate_evaluator == value


def test_parse_choices_keeps_order_and_drops_repeats() -> None:
    assert parse_choices("b, a,,b", variable="X", allowed="abc") == ["b", "a"]
    with pytest.raises(ValueError, match=r"X: unknown value\(s\) \['d'\]; allowed: \['a', 'b', 'c'\]"):
        parse_choices("a,d", variable="X", allowed="abc")


def test_an_argument_out_of_range_names_the_variable_and_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        TrainSettings(train_lora_r=0, home=3)
    message = str(info.value)
    assert "AGENTGYM_TRAIN_LORA_R (train_lora_r)" in message and "greater than or equal to 1" in message
    assert "AGENTGYM_HOME (home)" in message
    with pytest.raises(ValidationError, match=r"AGENTGYM_LABELLER_TICK_S \(tick_s\)"):
        LabellerSettings(tick_s=0)
