"""OpenTelemetry GenAI traces as Agent Gym experiences.

:mod:`~agentgym.processors.otel.mapping` (pure) maps one span's attributes, in any of
the three dialects (OpenTelemetry GenAI semantic conventions, OpenInference,
OpenLLMetry's legacy ``gen_ai.prompt.N.*``), to a step, and a trace's mapped spans to
one Experience; :mod:`~agentgym.processors.otel.processor` assembles the spans of each
trace as they arrive (possibly in several export batches) and emits the Experience,
revised by every later batch. See ``docs/otel.md``.
"""
