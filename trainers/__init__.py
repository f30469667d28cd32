"""Agent Gym's trainers: datasets, Ray Train fine-tuning, model registry, validation gate."""
