"""Importing any module of the project has no side effects: no app, no settings, no network.

Every module is imported in one fresh interpreter with no broker running and every
documented ``AGENTGYM_*`` variable set to garbage (a module that read one at import
would fail or misbehave), after patching the ways a side effect would show:
``socket.socket.connect`` (network), ``faust.App.__init__`` (an app built) and
``pydantic_settings.BaseSettings.__init__`` (the environment read through settings).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "producers", "processors", "trainers", "gateway", "ops")

_PROBE = r"""
import importlib, json, socket, sys, traceback
seen = {"connect": [], "apps": [], "settings": [], "errors": {}}

def connect(self, address, *a, **k):
    seen["connect"].append(repr(address))
    raise OSError("no network at import")

socket.socket.connect = connect
socket.socket.connect_ex = lambda self, address: connect(self, address)

import faust, faust.app.base
_app_init = faust.app.base.App.__init__
def app_init(self, *a, **k):
    seen["apps"].append("".join(traceback.format_stack(limit=8)))
    _app_init(self, *a, **k)
faust.app.base.App.__init__ = app_init

import pydantic_settings
_settings_init = pydantic_settings.BaseSettings.__init__
def settings_init(self, *a, **k):
    seen["settings"].append(type(self).__qualname__ + "\n" + "".join(traceback.format_stack(limit=8)))
    _settings_init(self, *a, **k)
pydantic_settings.BaseSettings.__init__ = settings_init

for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except BaseException as exc:
        seen["errors"][name] = "".join(traceback.format_exception(exc))[-3000:]
print("RESULT " + json.dumps(seen))
"""


def _modules() -> list[str]:
    names = ["agentgym"]
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(("agentgym", *parts)))
    return names


def _garbage_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    documented = set(re.findall(r"AGENTGYM_[A-Z0-9_]+", (REPO / "docs" / "configuration.md").read_text()))
    env.update({name: "garbage:\x7f!" for name in documented if not name.endswith("_")})
    env["AGENTGYM_BOOTSTRAP_SERVERS"] = "127.0.0.1:1"  # nothing listens there
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def test_importing_every_module_builds_nothing_reads_no_settings_and_touches_no_network(tmp_path: Path) -> None:
    modules = _modules()
    assert "agentgym.processors.app" in modules and "agentgym.processors.labeller" in modules
    done = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(modules)], cwd=tmp_path, env=_garbage_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-5000:]
    seen = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    assert seen["errors"] == {}, "\n".join(f"{k}:\n{v}" for k, v in seen["errors"].items())
    assert seen["apps"] == [], "a Faust app was built at import:\n" + seen["apps"][0]
    assert seen["settings"] == [], "settings were read at import:\n" + "\n".join(seen["settings"])
    assert seen["connect"] == [], f"connections attempted at import: {seen['connect']}"


def test_the_probe_sees_an_app_built_at_import(tmp_path: Path) -> None:
    # the patches catch what they are there to catch: `app` of processors.app builds one
    probe = _PROBE.replace("importlib.import_module(name)", "getattr(importlib.import_module(name), 'app')")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGYM_")}
    env.update({"AGENTGYM_PROCESSORS": "", "AGENTGYM_HOME": str(tmp_path), "AGENTGYM_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(["agentgym.processors.app"])], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    seen = json.loads(done.stdout.rsplit("RESULT ", 1)[1])
    assert seen["errors"] == {}, seen["errors"]
    assert len(seen["apps"]) == 1 and len(seen["settings"]) == 1
