"""Agent Gym's stream processors and the ClickHouse store they write through."""
