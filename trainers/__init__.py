"""Agent Gym's trainers: datasets, Ray Train fine-tuning, model registry, validation gate.

* :mod:`agentgym.processors.datasets`: labelled runs -> quality-filtered SFT and preference datasets (Parquet + manifest).
* :mod:`agentgym.trainers.modeling`: base models (a hub name, a local path, or ``tiny:<name>`` built from a config).
* :mod:`agentgym.trainers.training`: the per-worker ``train_func`` and the Ray Train launcher (TRL SFT / DPO with PEFT LoRA).
* :mod:`agentgym.trainers.registry`: model versions on the compacted ``gym-models-v1`` topic.
* :mod:`agentgym.trainers.gate`: the validation gate (held-out loss and a pluggable evaluator).
* :mod:`agentgym.trainers.experiments`: the A/B experiment a new candidate gets.
* :mod:`agentgym.trainers.service`: the trainer service that turns finished datasets into candidates.
* :mod:`agentgym.trainers.promoter`: experiment decisions into the registry (winner champion, rolled-back candidate retired).

Nothing here runs at import; heavy libraries (torch, transformers, ray) load on first use.
"""

__all__: list[str] = []
