# syntax=docker/dockerfile:1
# The Agent Gym image: the `agentgym` CLI with every extra (`.[all]`), used by compose.yaml
# for the topics job, the processors, the gateway, the Ray head and GPU workers and the
# trainer. Kafka, ClickHouse and Grafana run from their own images, so no Java here.
#
#   docker build -t agentgym:0.1.0 .
#
# torch from PyPI on Linux x86-64 is a CUDA build (several GB with its nvidia-* wheels):
# the same image serves the CPU services and the GPU worker.

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package is built from (the folders of [tool.setuptools.package-dir]),
# so a local .venv or data directory never enters the build context's transfer.
COPY pyproject.toml ./
COPY schemas schemas
COPY producers producers
COPY processors processors
COPY trainers trainers
COPY gateway gateway
COPY ops ops
COPY agentgym agentgym
COPY README.md ./

# A non-editable install into a venv, so the final stage needs neither the sources nor pip's
# build leftovers. ray[default] brings the dashboard (8265) and the Ray Client server (10001)
# that `ray start --head` serves in compose.yaml; ray[train] alone has neither (no grpcio).
# gcc builds the compiled Avro encoder (schemas/_avroenc.c; only in this stage: the final one gets the .so).
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/* \
    && python -m venv /opt/agentgym \
    && /opt/agentgym/bin/pip install ".[all]" "ray[default]"


FROM python:3.11-slim

ENV PATH=/opt/agentgym/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

COPY --from=build /opt/agentgym /opt/agentgym

# A fixed uid, and the directories compose.yaml mounts volumes on, created here so that a
# fresh named volume takes this ownership.
RUN groupadd --system --gid 1000 agentgym \
    && useradd --system --uid 1000 --gid agentgym --create-home --home-dir /home/agentgym agentgym \
    && mkdir -p /var/lib/agentgym/spool /var/lib/agentgym/artifacts \
    && chown -R agentgym:agentgym /var/lib/agentgym

USER agentgym
WORKDIR /var/lib/agentgym

CMD ["agentgym", "--help"]
