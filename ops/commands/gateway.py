"""``agentgym gateway run``: the HTTP ingestion gateway."""

from __future__ import annotations

import click


@click.group()
def gateway() -> None:
    """HTTP ingestion for agents that do not use the Python SDK."""


@gateway.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=int)
def run(host: str, port: int) -> None:
    """Serve POST /v1/experiences and /v1/feedback (JSON) into Kafka through the SDK."""
    import logging

    from agentgym.gateway.app import run as serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"agentgym gateway on http://{host}:{port} (POST /v1/experiences, /v1/feedback; GET /healthz)")
    serve(host, port)
