#!/usr/bin/env bash
# Sets up Agent Gym on a fresh machine: Java 17 + Maven (for the local Kafka broker),
# a virtual environment in .venv with the whole stack ([all]) and the test tools.
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn  >/dev/null 2>&1 || need_apt+=(maven)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)  # runs examples/typescript in the tests
command -v gcc  >/dev/null 2>&1 || need_apt+=(gcc)  # builds the compiled Avro encoder (schemas/_avroenc.c), masking pre-check (producers/_maskscan.c), JSON depth scan (gateway/_jsonscan.c), hot-request scanner (gateway/_httpscan.c)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)  # the dashboard's browser tests drive it with Playwright (which downloads no browser)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "==> installing ${need_apt[*]} (the local Kafka broker runs on Java, its jars come from Maven Central; Node runs the TypeScript example, chromium the browser tests)"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
echo "==> installing agentgym[all,dev] into .venv (PyTorch from PyPI is large; pip caches it)"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q --no-compile -e ".[all,dev]"
# Bytecode for the environment (~24,000 modules) and the project, compiled on every core (pip's own
# step is serial); a second run only checks timestamps. Not left to Python's lazy writes: where
# PYTHONDONTWRITEBYTECODE is set, as on this project's CI machines, nothing is ever written, and every
# process (each Faust worker, Ray Train actor, CLI call) compiled torch, transformers and the rest from
# source again -- a Ray Train job took 59 s instead of 23 s. A few files in site-packages are templates,
# not Python, and fail to compile: hence the ignored status.
echo "==> compiling bytecode"
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/python -m compileall -q -j 0 "$site" agentgym schemas producers processors trainers gateway ops >/dev/null || true
.venv/bin/agentgym --version
