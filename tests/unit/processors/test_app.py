"""Building the Faust app from settings: what is registered and where its web server binds.

Building an app connects to nothing (Faust connects when the worker starts).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agentgym.processors import app as app_module
from agentgym.processors.app import REGISTRATIONS, create_app
from agentgym.processors.settings import KNOWN_PROCESSORS, ProcessorSettings


def _settings(tmp_path: Path, **kwargs: object) -> ProcessorSettings:
    return ProcessorSettings(home=tmp_path, bootstrap_servers="127.0.0.1:1", **kwargs)  # type: ignore[arg-type]


def test_every_known_processor_has_one_registration() -> None:
    assert tuple(REGISTRATIONS) == KNOWN_PROCESSORS
    assert all(callable(r) for r in REGISTRATIONS.values())


def test_the_web_server_binds_loopback_by_default(tmp_path: Path) -> None:
    assert ProcessorSettings.model_fields["faust_web_bind"].default == "127.0.0.1"
    app = create_app(_settings(tmp_path, processors=""))
    assert app.conf.web_bind == "127.0.0.1"
    assert app.conf.web_host == "127.0.0.1"


def test_a_setting_binds_every_interface(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, processors="", faust_web_bind="0.0.0.0"))
    assert app.conf.web_bind == "0.0.0.0"
    assert app.conf.web_host == socket.gethostname()  # others reach the worker by its name


def test_only_the_named_processors_are_registered(tmp_path: Path) -> None:
    app = create_app(_settings(tmp_path, processors="labeller", app_id="unit-labeller"))
    assert app.conf.id == "unit-labeller"
    assert sorted(app.agents) == ["labeller-commands", "labeller-join-experiences", "labeller-join-feedback"]
    assert sorted(t.name for t in app.tables.values()) == ["labeller-learners", "labeller-traces"]
    assert (tmp_path / "faust").is_dir()  # the data directory defaults to <home>/faust

    app = create_app(_settings(tmp_path, processors="experiments,labeller", app_id="unit-both"))
    agents = set(app.agents)
    assert {"experiments-units", "experiments-aggregate", "labeller-commands"} <= agents
    assert app.agents["experiments-units"].channel.get_topic_name() == "unit-both-experiments-units"


def test_the_module_builds_its_app_on_first_access_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mp = monkeypatch
    mp.setattr(app_module, "_app", None)
    mp.setenv("AGENTGYM_HOME", str(tmp_path))
    mp.setenv("AGENTGYM_PROCESSORS", "")
    assert "app" not in vars(app_module) or vars(app_module)["app"] is None
    first = app_module.app
    assert app_module.app is first  # one app per process
    assert first.conf.web_bind == "127.0.0.1"
