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
command -v gcc  >/dev/null 2>&1 || need_apt+=(gcc)  # builds the compiled Avro encoder (schemas/_avroenc.c)
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
# --no-compile: no .pyc for the ~24,000 modules up front (~40 s); Python writes them for the modules imported
.venv/bin/python -m pip install -q --no-compile -e ".[all,dev]"
.venv/bin/agentgym --version
