"""Fine-tuning on Ray Train: a per-worker ``train_func`` and a separate launcher.

* :mod:`agentgym.trainers.training.job`: :class:`TrainJob`, everything a run needs (plain data).
* :mod:`agentgym.trainers.training.trainer`: the TRL ``SFTTrainer`` / ``DPOTrainer`` with a PEFT LoRA adapter.
* :mod:`agentgym.trainers.training.train_func`: ``train_func(config)``, run by every Ray Train worker.
* :mod:`agentgym.trainers.training.launcher`: ``launch(job)``: ``TorchTrainer.fit()``, then the adapter into the model store.

Importing this package loads neither torch nor Ray.
"""

from agentgym.trainers.training.job import TrainJob, model_version_for, new_job_id

__all__ = ["TrainJob", "model_version_for", "new_job_id"]
