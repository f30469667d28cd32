"""Agent Gym's trainers: datasets, Ray Train fine-tuning, model registry, validation gate.

* :mod:`trainers.datasets`: labelled runs -> quality-filtered SFT and preference datasets (Parquet + manifest).
* :mod:`trainers.modeling`: base models (a hub name, a local path, or ``tiny:<name>`` built from a config).
* :mod:`trainers.training`: the per-worker ``train_func`` and the Ray Train launcher (TRL SFT / DPO with PEFT LoRA).
* :mod:`trainers.registry`: model versions on the compacted ``gym-models-v1`` topic.
* :mod:`trainers.gate`: the validation gate (held-out loss and a pluggable evaluator).
* :mod:`trainers.experiments`: the A/B experiment a new candidate gets.
* :mod:`trainers.service`: the trainer service that turns finished datasets into candidates.
* :mod:`trainers.promoter`: experiment decisions into the registry (winner champion, rolled-back candidate retired).

Nothing here runs at import; heavy libraries (torch, transformers, ray) load on first use.
"""

__all__: list[str] = []
