"""``agentgym gateway run``: the Agent Gym API (authenticated HTTP front door)."""

from __future__ import annotations

from pathlib import Path
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
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None,
              help="serve https with this PEM certificate [env AGENTGYM_GATEWAY_TLS_CERT]")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None,
              help="the certificate's PEM private key [env AGENTGYM_GATEWAY_TLS_KEY]")
@click.option("--tls-client-ca", type=click.Path(path_type=Path), default=None,
              help="require client certificates signed by this PEM CA [env AGENTGYM_GATEWAY_TLS_CLIENT_CA]")
def run(host: str | None, port: int | None, workers: int | None, bootstrap: str | None, tls_cert: Path | None,
        tls_key: Path | None, tls_client_ca: Path | None) -> None:
    """Serve the API (see docs/api.md); keys come from `agentgym keys create`."""
    import logging

    from pydantic import ValidationError

    overrides: dict[str, Any] = {k: v for k, v in (("host", host), ("port", port), ("workers", workers),
                                                   ("bootstrap_servers", bootstrap), ("tls_cert", tls_cert),
                                                   ("tls_key", tls_key), ("tls_client_ca", tls_client_ca)) if v is not None}
    try:
        settings = GatewaySettings(**overrides)
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click.echo(f"agentgym gateway on {settings.scheme}://{settings.host}:{settings.port} ({settings.workers} worker(s); "
               f"GET /openapi.json describes it)")
    serve(settings)
