"""``agentgym gateway run``: the Agent Gym API (authenticated HTTP front door)."""

from __future__ import annotations

from typing import Any

import click

from agentgym.gateway.app import run as serve
from agentgym.gateway.settings import GatewaySettings

__all__ = ["gateway"]


@click.group()
def gateway() -> None:
    """The Agent Gym API: authenticated, tenant-scoped, rate-limited HTTP."""


@gateway.command()
@click.option("--host", default=None, help="address to listen on [env AGENTGYM_GATEWAY_HOST; 127.0.0.1]")
@click.option("--port", default=None, type=int, help="port [env AGENTGYM_GATEWAY_PORT; 8080]")
@click.option("--workers", default=None, type=int, help="processes sharing the port [env AGENTGYM_GATEWAY_WORKERS; 1]")
@click.option("--bootstrap", default=None, help="Kafka [env AGENTGYM_BOOTSTRAP_SERVERS; 127.0.0.1:9092]")
def run(host: str | None, port: int | None, workers: int | None, bootstrap: str | None) -> None:
    """Serve the API (see docs/api.md); keys come from `agentgym keys create`."""
    import logging

    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port), ("workers", workers),
                                                   ("bootstrap_servers", bootstrap)) if v is not None}
    settings = GatewaySettings(**overrides)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"agentgym gateway on http://{settings.host}:{settings.port} ({settings.workers} worker(s); "
               f"GET /openapi.json describes it)")
    serve(settings)
