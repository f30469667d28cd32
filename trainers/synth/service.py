"""``agentgym synth generate`` end to end: mine, generate, validate, write, publish lineage, announce.

1. **Mine** the agent's newest real runs from ClickHouse (:func:`agentgym.trainers.synth.mining.mine_runs`)
   and scrub them with the dataset builder's scrubbers.
2. **Hold out** evaluation prompts: the ``eval`` splits of the named datasets (default:
   every non-synthetic dataset of the tenant and agent in the dataset store) and any
   prompt lists given. A real run is no seed when its prompt is one of them (exact or
   near), or when the dataset builder's split would put it in ``eval``
   (``split_of(prompt_key, AGENTGYM_DATASET_EVAL_FRACTION)``): splits are fixed by
   prompt hash, so such a prompt is held out in every dataset, including later ones.
3. **Generate and validate** one batch (:func:`agentgym.trainers.synth.pipeline.generate_batch`)
   against the real inputs and the held-out prompts.
4. **Write** the scenarios as a synthetic dataset (:mod:`agentgym.trainers.synth.output`) with the
   quality report in its manifest and beside it (``quality_report.json``).
5. **Publish lineage**: one ScenarioLineage record per scenario and source trace on
   ``gym-scenario-lineage-v1`` (:func:`agentgym.trainers.synth.output.lineage_records`); the
   ClickHouse sink materialises them into ``synthetic_scenarios``, joinable with
   ``v_runs`` on ``(tenant_id, source_trace_id = trace_id)``. Like every other record,
   lineage reaches ClickHouse through Kafka and the sink, which owns the store's writes.
6. **Announce** it (DatasetReady, kind ``synthetic``, on ``gym-datasets-v1``; the
   ClickHouse sink records it in ``datasets``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgym.processors.datasets.quality import NearDuplicateIndex, Scrubber, prompt_key, split_of
from agentgym.processors.datasets.store import DatasetStore, Manifest
from agentgym.processors.datasets.settings import DatasetSettings
from agentgym.trainers.synth.bases import bases_from_runs, collect_slot_values
from agentgym.trainers.synth.clusters import cluster_failures
from agentgym.trainers.synth.exceptions import NoSourcesError, SynthError
from agentgym.trainers.synth.generators import GenerationContext, Generator
from agentgym.trainers.synth.mining import mine_runs, scrub_run
from agentgym.trainers.synth.output import (
    KIND,
    assign_splits,
    lineage_records,
    synthetic_dataset_id,
    write_scenarios,
)
from agentgym.trainers.synth.paraphrase import ModelParaphraser, Paraphraser, RuleParaphraser
from agentgym.trainers.synth.pipeline import generate_batch
from agentgym.trainers.synth.plugins import load_generator
from agentgym.trainers.synth.report import QualityReport
from agentgym.trainers.synth.scenario import Message, Scenario, SourceRun, content_key, scenario_text
from agentgym.trainers.synth.settings import SynthSettings
from agentgym.trainers.synth.spec import DomainSpec, SpecGenerator
from agentgym.trainers.synth.text import SYNONYMS
from agentgym.trainers.synth.validation import BatchValidator, ValidationConfig, diversity, messages_of

__all__ = ["DEFAULT_GENERATORS", "REPORT_FILE", "SynthRequest", "SynthOutcome", "SynthService", "load_prompt_list"]

log = logging.getLogger("agentgym.synth")

DEFAULT_GENERATORS = ("paraphrase", "failure", "edge")
REPORT_FILE = "quality_report.json"


@dataclass(frozen=True)
class SynthRequest:
    """One ``synth generate``.

    Attributes:
        generators: generator references (:func:`agentgym.trainers.synth.plugins.load_generator`); default the built-ins.
        specs: YAML domain specs (paths or shipped names), added to the generators.
        paraphraser: a model version of the registry to paraphrase with (None: rules).
        eval_datasets: dataset ids whose ``eval`` prompts are held out (empty: every non-synthetic
            dataset of the tenant and agent).
        eval_prompt_files: more held-out prompts (see :func:`load_prompt_list`).
        write: False computes and reports without writing or announcing.
    """

    agent_id: str
    n: int
    tenant_id: str = "default"
    seed: int = 0
    generators: tuple[str, ...] = DEFAULT_GENERATORS
    specs: tuple[str, ...] = ()
    paraphraser: str | None = None
    eval_datasets: tuple[str, ...] = ()
    eval_prompt_files: tuple[str, ...] = ()
    write: bool = True


@dataclass
class SynthOutcome:
    """What a run produced."""

    scenarios: list[Scenario]
    splits: dict[str, list[Scenario]]
    report: QualityReport
    manifest: Manifest | None = None
    announced: bool = False
    lineage_published: int | None = None
    announce_error: str | None = None
    notes: list[str] = field(default_factory=list)


def load_prompt_list(path: str | Path) -> list[list[Message]]:
    """Held-out prompts from a file.

    ``.jsonl``: one JSON value a line -- a string, a list of messages, or an object with
    ``prompt`` (either of those); ``.json``: a list of such values; anything else: one
    user prompt per non-empty line.

    Raises:
        SynthError: the file cannot be read or holds something else.
    """
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SynthError(f"{p}: cannot read the prompt list: {exc}") from None

    def one(value: Any, where: str) -> list[Message]:
        if isinstance(value, Mapping) and "prompt" in value:
            value = value["prompt"]
        if isinstance(value, str):
            return [{"role": "user", "content": value}]
        if isinstance(value, list) and all(isinstance(m, Mapping) and "role" in m and "content" in m for m in value):
            return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
        raise SynthError(f"{where}: expected a prompt string, a list of messages, or an object with 'prompt'")

    try:
        if p.suffix == ".jsonl":
            return [one(json.loads(line), f"{p}:{i + 1}") for i, line in enumerate(text.splitlines()) if line.strip()]
        if p.suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise SynthError(f"{p}: expected a JSON list of prompts")
            return [one(v, f"{p}[{i}]") for i, v in enumerate(data)]
    except json.JSONDecodeError as exc:
        raise SynthError(f"{p}: not valid JSON: {exc}") from None
    return [[{"role": "user", "content": line.strip()}] for line in text.splitlines() if line.strip()]


class SynthService:
    """Runs :class:`SynthRequest` values against one ClickHouse store and one dataset store.

    Args:
        store: the ClickHouse store to mine (``open_reader()``); None mines nothing (spec- or plugin-only batches).
        datasets: the dataset store to read held-out splits from and write to.
        settings: generation settings.
        dataset_settings: scrubbers and the builder's eval fraction.
        announce: called with the written manifest (produce DatasetReady); None: no announcement.
        publish_lineage: called with the ScenarioLineage records of the written dataset (produce them on
            ``gym-scenario-lineage-v1``), before ``announce``; None: lineage stays in the dataset only.
        paraphraser_factory: model version -> paraphraser (default: :meth:`ModelParaphraser.from_registry`).
        clock: milliseconds since the epoch.
    """

    def __init__(
        self,
        store: Any,
        datasets: DatasetStore,
        settings: SynthSettings | None = None,
        dataset_settings: DatasetSettings | None = None,
        announce: Callable[[Manifest], None] | None = None,
        publish_lineage: Callable[[Sequence[dict[str, Any]]], None] | None = None,
        paraphraser_factory: Callable[[str], Paraphraser] | None = None,
        clock: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.store = store
        self.datasets = datasets
        self.settings = settings or SynthSettings()
        self.dataset_settings = dataset_settings or DatasetSettings()
        self.announce = announce
        self.publish_lineage = publish_lineage
        self.paraphraser_factory = paraphraser_factory
        self.clock = clock
        ds = self.dataset_settings
        self.scrubber = Scrubber(ds.scrubbers, ds.dataset_scrub_patterns) if ds.scrubbers or ds.dataset_scrub_patterns else None

    # -- inputs -------------------------------------------------------------------
    def mine(self, tenant_id: str, agent_id: str) -> tuple[list[SourceRun], Counter[str]]:
        """The agent's real runs, scrubbed, newest first; and what the scrubbers replaced."""
        scrubbed: Counter[str] = Counter()
        if self.store is None:
            return [], scrubbed
        runs = mine_runs(self.store, tenant_id, agent_id, limit=self.settings.synth_max_sources,
                         window_days=self.settings.synth_window_days, now_ms=self.clock())
        return [scrub_run(r, self.scrubber, scrubbed) for r in runs], scrubbed

    def held_out(self, tenant_id: str, agent_id: str, dataset_ids: Sequence[str] = (),
                 files: Sequence[str] = ()) -> tuple[list[list[Message]], list[str]]:
        """Held-out evaluation prompts and the datasets they came from.

        Raises:
            DatasetNotFoundError: a named dataset is not in the store.
        """
        if dataset_ids:
            manifests = [self.datasets.manifest(d) for d in dataset_ids]
        else:
            manifests = [m for m in self.datasets.list()
                         if m.tenant_id == tenant_id and m.agent_id == agent_id and m.kind != KIND]
        prompts: list[list[Message]] = []
        used = []
        for m in manifests:
            if "eval" not in m.shards:
                continue
            prompts.extend(messages_of(self.datasets.read(m, "eval")))
            used.append(m.dataset_id)
        for f in files:
            prompts.extend(load_prompt_list(f))
        return prompts, used

    def _generators(self, request: SynthRequest) -> tuple[list[Generator], list[DomainSpec]]:
        gens = [load_generator(ref) for ref in request.generators]
        specs = [g.spec for g in gens if isinstance(g, SpecGenerator)]
        for ref in request.specs:
            g = load_generator(ref)
            if not isinstance(g, SpecGenerator):
                raise SynthError(f"--spec {ref!r} is not a YAML domain spec")
            gens.append(g)
            specs.append(g.spec)
        return gens, specs

    def _paraphraser(self, request: SynthRequest, specs: Sequence[DomainSpec]) -> Paraphraser:
        rules = RuleParaphraser([*SYNONYMS, *(g for s in specs for g in s.synonyms)])
        if not request.paraphraser:
            return rules
        factory = self.paraphraser_factory or (lambda mv: ModelParaphraser.from_registry(
            mv, self.settings.bootstrap_servers, self.settings.synth_paraphraser_max_new_tokens))
        paraphraser = factory(request.paraphraser)
        if isinstance(paraphraser, ModelParaphraser):
            paraphraser.fallback = rules
        return paraphraser

    # -- the run ------------------------------------------------------------------
    def run(self, request: SynthRequest) -> SynthOutcome:
        """Mines, generates, validates and (unless ``request.write`` is False) writes, announces and records.

        Raises:
            NoSourcesError: no real runs and no spec or plugin generator to work from.
            GeneratorLoadError, SpecError: a generator reference or spec that cannot be used.
        """
        s = self.settings
        if request.n < 1:
            raise SynthError("--n must be at least 1")
        generators, specs = self._generators(request)
        runs, scrubbed = self.mine(request.tenant_id, request.agent_id)
        held, held_from = self.held_out(request.tenant_id, request.agent_id, request.eval_datasets, request.eval_prompt_files)
        seeds, held_seeds = self._seeds(runs, held)
        builtin_only = all(g.family in ("paraphrase", "failure", "edge") and not isinstance(g, SpecGenerator) for g in generators)
        if not seeds and builtin_only and not specs:
            raise NoSourcesError(
                f"no usable real runs of {request.tenant_id}/{request.agent_id} (read {len(runs)}, held out {held_seeds})"
                " and no --spec or plugin generator to generate from")
        bases = bases_from_runs(seeds)
        clusters = cluster_failures(bases, threshold=s.synth_cluster_threshold)
        slot_values = collect_slot_values(bases)
        for spec in specs:
            for slot, values in spec.slot_values().items():
                slot_values.setdefault(slot, [])
                slot_values[slot] += [v for v in values if v not in slot_values[slot]]
        paraphraser = self._paraphraser(request, specs)
        ctx = GenerationContext(
            tenant_id=request.tenant_id, agent_id=request.agent_id, real_bases=bases, clusters=clusters,
            paraphraser=paraphraser, slot_values=slot_values, specs=specs, long_chars=s.synth_long_chars, runs=seeds,
        )
        validator = BatchValidator(
            ValidationConfig(s.synth_near_duplicate_threshold, s.synth_leak_threshold, s.synth_max_prompt_chars),
            real_inputs=[r.messages for r in runs], held_out=held,
        )
        batch = generate_batch(ctx, generators, request.n, request.seed, validator, mix=s.synth_mix,
                               oversample=s.synth_oversample, max_rounds=s.synth_max_rounds)
        report = batch.report
        report.sources = {
            "runs_read": len(runs), "seeds": len(seeds), "held_out_seeds": held_seeds,
            "succeeded": sum(r.succeeded for r in seeds), "failed": sum(r.failed for r in seeds),
            "templates": sum(1 for b in bases if b.values), "with_expected_tool": sum(1 for b in bases if b.tool),
            "failure_clusters": len(clusters), "held_out_prompts": validator.held_out_count,
            "held_out_datasets": held_from, "scrubbed": dict(sorted(scrubbed.items())),
            "clusters": [{"id": c.cluster_id, "key": c.key, "size": c.size, "weight": round(c.weight, 3),
                          "example": c.bases[0].text[:120]} for c in clusters[:20]],
        }
        report.real_diversity = diversity([scenario_text(r.messages) for r in runs], seed=request.seed).to_dict() if runs else {}
        splits = assign_splits(batch.scenarios, s.synth_eval_fraction)
        report.splits = {k: len(v) for k, v in splits.items()}
        outcome = SynthOutcome(batch.scenarios, splits, report)
        if not request.write:
            outcome.notes.append("dry run: nothing written")
            return outcome
        if not batch.scenarios:
            outcome.notes.append("no scenario passed validation: nothing written")
            return outcome
        outcome.manifest = self._write(request, generators, specs, paraphraser, runs, splits, report, held_from)
        try:
            # lineage first: a dataset announced has its lineage published (event ids are deterministic,
            # so publishing again after a failure leaves one row per scenario and source trace)
            if self.publish_lineage is not None:
                records = lineage_records(outcome.manifest, splits)
                self.publish_lineage(records)
                outcome.lineage_published = len(records)
            if self.announce is not None:
                self.announce(outcome.manifest)
                outcome.announced = True
        except Exception as exc:  # the dataset is written: say so, and how to announce it again
            outcome.announce_error = f"{type(exc).__name__}: {exc}"
            outcome.notes.append(
                f"dataset {outcome.manifest.dataset_id} written but not announced ({outcome.announce_error}); "
                "the same command announces it again (same id, same bytes)")
        return outcome

    def _seeds(self, runs: Sequence[SourceRun], held: Iterable[Sequence[Mapping[str, str]]]) -> tuple[list[SourceRun], int]:
        """The runs usable as seeds, and how many were held out."""
        held_keys = set()
        index = NearDuplicateIndex(threshold=self.settings.synth_leak_threshold) if self.settings.synth_leak_threshold < 1 else None
        for i, msgs in enumerate(held):
            held_keys.add(content_key(msgs))
            if index is not None:
                index.add(str(i), scenario_text(msgs))
        fraction = self.dataset_settings.dataset_eval_fraction
        seeds, dropped = [], 0
        for r in runs:
            if (content_key(r.messages) in held_keys or split_of(prompt_key(r.messages), fraction) == "eval"
                    or (index is not None and index.find(scenario_text(r.messages)) is not None)):
                dropped += 1
                continue
            seeds.append(r)
        return seeds, dropped

    def _write(self, request: SynthRequest, generators: Sequence[Generator], specs: Sequence[DomainSpec],
               paraphraser: Paraphraser, runs: Sequence[SourceRun], splits: Mapping[str, list[Scenario]],
               report: QualityReport, held_from: Sequence[str]) -> Manifest:
        s = self.settings
        traces = sorted({t for sc in (x for v in splits.values() for x in v) for t in sc.source_trace_ids})
        used = set(traces)
        spec_info = []
        for spec in specs:
            src = Path(spec.source)
            sha = hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file() else ""
            spec_info.append({"name": spec.name, "source": spec.source, "sha256": sha})
        settings = {k: v for k, v in s.model_dump().items() if k.startswith("synth_")}
        settings.update(dataset_eval_fraction=self.dataset_settings.dataset_eval_fraction,
                        scrubbers=self.scrubber.names if self.scrubber else [])
        fingerprint = json.dumps({
            "seed": request.seed, "n": request.n, "generators": [g.name for g in generators], "specs": spec_info,
            "paraphraser": paraphraser.name, "sources": sorted(r.trace_id for r in runs), "held_out": list(held_from),
            "settings": settings,
        }, sort_keys=True, default=str)
        dataset_id = synthetic_dataset_id(request.tenant_id, request.agent_id, fingerprint)
        lineage = {
            "trace_ids": traces, "source_trace_count": len(traces),
            "labeller_versions": sorted({r.labeller_version for r in runs if r.trace_id in used and r.labeller_version}),
            "served_model_versions": sorted({r.model_version for r in runs if r.trace_id in used and r.model_version}),
            "seed": request.seed, "generators": [g.name for g in generators], "specs": spec_info,
            "paraphraser": paraphraser.name, "held_out_datasets": list(held_from),
            "from_ms": min((r.ts_ms for r in runs if r.trace_id in used), default=0),
            "to_ms": max((r.ts_ms for r in runs if r.trace_id in used), default=0),
        }
        counts = {"runs_read": len(runs), "requested": request.n, "dropped": dict(report.rejected),
                  "quality": report.to_dict()}
        manifest = write_scenarios(
            self.datasets, dataset_id=dataset_id, tenant_id=request.tenant_id, agent_id=request.agent_id,
            created_ms=self.clock(), splits=splits, shard_rows=self.dataset_settings.dataset_shard_rows,
            counts=counts, lineage=lineage, settings=settings,
        )
        try:
            import fsspec

            fs, path = fsspec.core.url_to_fs(manifest.uri)
            fs.pipe_file(f"{path.rstrip('/')}/{REPORT_FILE}", report.to_json().encode())
        except OSError as exc:  # the manifest holds the report too
            log.warning("synth: could not write %s next to %s: %s", REPORT_FILE, manifest.uri, exc)
        return manifest
