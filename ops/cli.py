"""The ``agentgym`` command.

Sub-commands live in ``ops/commands/<name>.py`` and are imported only when used,
so ``agentgym --help`` stays fast and each needs only its own extras installed.
"""

from __future__ import annotations

import importlib
import sys

import click

__all__ = ["main"]

# name -> "module:attribute" of a click command or group
COMMANDS: dict[str, tuple[str, str]] = {
    "kafka": ("agentgym.ops.commands.kafka:kafka", "run the local Apache Kafka broker (KRaft)"),
    "topics": ("agentgym.ops.commands.kafka:topics", "create Agent Gym's topics"),
    "demo": ("agentgym.ops.commands.demo:demo", "the main job: start the local stack and run the loop"),
    "gateway": ("agentgym.ops.commands.gateway:gateway", "run the Agent Gym API (authenticated HTTP gateway)"),
    "keys": ("agentgym.ops.commands.keys:keys", "API keys of the gateway: create, list, revoke"),
    "tenants": ("agentgym.ops.commands.tenants:tenants", "tenant plans: set, list, plans"),
    "labeller": ("agentgym.ops.commands.labeller:labeller", "the outcome labeller: relabel past runs from the log (replay)"),
    "processors": ("agentgym.ops.commands.processors:processors", "run the stream processors (Faust worker)"),
    "sql": ("agentgym.ops.commands.sql:sql", "run SQL against the ClickHouse store (analysts)"),
    "synth": ("agentgym.ops.commands.synth:synth", "generate synthetic scenarios from real interactions"),
    "experiments": ("agentgym.ops.commands.experiments:experiments", "A/B experiments: create, list, pause, resume, stop, rollback, watch"),
    "datasets": ("agentgym.ops.commands.datasets:datasets", "finished fine-tuning datasets: list, show, export, build"),
    "train": ("agentgym.ops.commands.train:train", "fine-tune a LoRA adapter on a dataset with Ray Train"),
    "models": ("agentgym.ops.commands.models:models", "the model registry: list, show, promote, retire"),
    "privacy": ("agentgym.ops.commands.privacy:privacy", "privacy: delete a user's data (delete, deletions)"),
    "trainer": ("agentgym.ops.commands.trainer:trainer", "the trainer service: run, jobs"),
    "up": ("agentgym.ops.commands.stack:up", "start the local stack in the background (broker, processors, trainer, API)"),
    "status": ("agentgym.ops.commands.stack:status", "the local stack: components, consumer lag, events/s, spool"),
    "down": ("agentgym.ops.commands.stack:down", "stop the local stack"),
    "logs": ("agentgym.ops.commands.stack:logs", "print or follow the local stack's logs"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name][0].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option("0.1.0", prog_name="agentgym")
def main() -> None:
    """Agent Gym: deployed AI agents that learn from their own experience."""


if __name__ == "__main__":
    sys.exit(main())
