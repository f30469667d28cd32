"""The dashboard's pages: each gathers its data server-side for the session's tenant, then renders a template.

Data comes from the same code the API runs, with the session's key:

* ClickHouse: the named queries of :mod:`agentgym.gateway.analytics` through
  :func:`~agentgym.gateway.analytics.run_for_key` (the tenant bound by the server to the
  key's, the query limits applied); every aggregate is computed by the engine, so a page
  costs the same with 100 runs or 100,000.
* Kafka followers: experiments' live configurations (the gateway's follower) and the
  model registry (:class:`~agentgym.gateway.models.Models`), filtered to the tenant.
* Stores: dataset manifests (:mod:`agentgym.gateway.datasets`) and training job records
  with their progress (:mod:`agentgym.gateway.jobs`), filtered to the tenant.

Every page view is audited (``dashboard.view``, with the queries it ran), like the
API's analytics queries; a promotion or retirement as ``model.promote``/``model.retire``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from agentgym.gateway.analytics import ANALYTICS, CATALOGUE, QueryLimits, _parse_time, run_for_key
from agentgym.gateway.audit import KEY_SLOT, audit
from agentgym.gateway.dashboard import charts
from agentgym.gateway.dashboard.session import COOKIE, Session, check_csrf, clear_cookie, csrf_token, set_cookie
from agentgym.gateway.datasets import DATASETS
from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.experiments import EXPERIMENTS
from agentgym.gateway.jobs import TRAINING_JOBS
from agentgym.gateway.models import MODELS, apply
from agentgym.gateway.resource import READ, path_id
from agentgym.gateway.streams import stream_response
from agentgym.processors.store.exceptions import QueryError

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["Pages", "NAV"]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
_DAY_MS = 86_400_000
NAV = (("/dashboard/", "Overview"), ("/dashboard/experiments", "Experiments"), ("/dashboard/models", "Models"),
       ("/dashboard/datasets", "Datasets"), ("/dashboard/dead-letters", "Dead letters"))
"""Every page, in the navigation's order."""
_QUERIES = web.RequestKey("agentgym_dashboard_queries", list)
_SECURITY_HEADERS = {
    # no inline script or style: the page runs only /dashboard/static/dashboard.js
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_STATIC_TYPES = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}


class LoginRequired(Exception):
    """No valid session: the page answers with a redirect to the login form."""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _ts_ms(text: str | None) -> int | None:
    """Epoch ms of a ClickHouse DateTime64 as JSON gives it (``2026-11-15 10:00:00.000``, UTC)."""
    if not text:
        return None
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp() * 1000)


# -- template filters -------------------------------------------------------------------
def _pct(x: Any, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * float(x):.{digits}f}%"


def _num(x: Any, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e15):
        return f"{int(x):,}"
    return f"{float(x):,.{digits}f}"


def _sig(x: Any, digits: int = 3) -> str:
    return "–" if x is None else f"{float(x):.{digits}g}"


def _usd(x: Any) -> str:
    return "–" if x is None else f"${float(x):,.4f}"


def _raw(x: Any) -> str:
    """The raw value for a ``data-value`` attribute (empty for none)."""
    return "" if x is None else repr(x) if isinstance(x, float) else str(x)


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "–"
    s = float(seconds)
    if abs(s) < 120:
        return f"{s:.1f} s"
    if abs(s) < 7200:
        return f"{s / 60:.1f} min"
    if abs(s) < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def environment() -> jinja2.Environment:
    """The templates, autoescaped (every value a tenant sent is text, never markup)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pct=_pct, num=_num, sig=_sig, usd=_usd, raw=_raw, duration=_duration, iso=_iso)
    return env


class Pages:
    """The dashboard's handlers (``async def handler(request, gw)``) and what they share: the templates."""

    def __init__(self) -> None:
        self.env = environment()

    # -- rendering ----------------------------------------------------------------------
    def render(self, request: web.Request, template: str, session: Session | None, status: int = 200, **context: Any) -> web.Response:
        html = self.env.get_template(template).render(
            session=session, nav=NAV, path=request.path, tenant=session.tenant_id if session else None, **context)
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8", headers=_SECURITY_HEADERS)

    def error(self, request: web.Request, exc: ApiError, session: Session | None) -> web.Response:
        resp = self.render(request, "error.html", session, status=exc.status, message=exc.reason, field=exc.field,
                           title=f"Error {exc.status}")
        for name, value in (exc.headers or {}).items():
            if name.lower() == "retry-after":
                resp.headers[name] = value
        return resp

    # -- session ------------------------------------------------------------------------
    def session(self, request: web.Request, gw: "Gateway") -> Session:
        """The request's session, verified like a bearer key (scope read or admin); LoginRequired otherwise."""
        token = request.cookies.get(COOKIE)
        if not token:
            raise LoginRequired()
        try:
            key = gw.authorize(request, token, READ)
        except ApiError as exc:
            if exc.status in (401, 403):  # revoked, unknown or rescoped since the login
                raise LoginRequired() from None
            raise
        return Session(key, csrf_token(token))

    async def login_form(self, request: web.Request, gw: "Gateway") -> web.StreamResponse:
        return self.render(request, "login.html", None, title="Log in", message=None)

    async def login(self, request: web.Request, gw: "Gateway") -> web.StreamResponse:
        form = await request.post()
        token = form.get("api_key")
        token = token.strip() if isinstance(token, str) else ""
        try:
            if not token:
                raise ApiError(401, "unauthorized", "api_key", "is missing: paste an API key with the read scope")
            key = gw.authorize(request, token, READ)
        except ApiError as exc:
            if exc.status == 403 and request.get(KEY_SLOT) is not None:
                audit(request, "dashboard.login", "dashboard", exc.status, detail=f"{exc.field}: {exc.reason}")
            return self.render(request, "login.html", None, status=exc.status, title="Log in", message=exc.reason)
        audit(request, "dashboard.login", "dashboard", 200, key=key)
        resp = web.HTTPSeeOther("/dashboard/")
        set_cookie(resp, request, token)
        return resp

    async def logout(self, request: web.Request, gw: "Gateway") -> web.StreamResponse:
        token = request.cookies.get(COOKIE)
        if token:
            form = await request.post()
            check_csrf(request, token, form.get("csrf_token"))
        resp = web.HTTPSeeOther("/dashboard/login")
        clear_cookie(resp, request)
        return resp

    async def static(self, request: web.Request, gw: "Gateway") -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _STATIC_TYPES:
            raise ApiError(404, "not_found", "name", f"no static file {name[:40]!r}")
        return web.Response(body=(STATIC / name).read_bytes(), headers={
            "Content-Type": _STATIC_TYPES[name], "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"})

    # -- data ---------------------------------------------------------------------------
    async def query(self, request: web.Request, gw: "Gateway", session: Session, name: str, **given: Any) -> list[dict[str, Any]]:
        """Rows of the named query ``name`` for the session's tenant (ApiError naming the problem otherwise)."""
        request.setdefault(_QUERIES, []).append(name)
        try:
            body = await run_for_key(session.key, request.app[ANALYTICS], CATALOGUE[name], {k: str(v) for k, v in given.items()},
                                     QueryLimits.of(gw.settings), _now_ms())
        except QueryError as exc:
            raise ApiError(500, "query_error", name, f"the analytics store refused the query: {str(exc)[:300]}") from None
        return body["rows"]

    async def maybe(self, rows: Awaitable[list[dict[str, Any]]], errors: list[str]) -> list[dict[str, Any]]:
        """``rows``, or none with the error's message added to ``errors`` (a page that has other sources too)."""
        try:
            return await rows
        except ApiError as exc:
            errors.append(exc.reason)
            return []

    @staticmethod
    def window(request: web.Request, default_days: float) -> tuple[dict[str, str], int, int]:
        """The ``from``/``to`` of the page's query string (default: the last ``default_days``), as the queries take them."""
        to_raw, from_raw = request.query.get("to", "").strip(), request.query.get("from", "").strip()
        to_ms = _parse_time("to", to_raw) if to_raw else _now_ms()
        from_ms = _parse_time("from", from_raw) if from_raw else to_ms - int(default_days * _DAY_MS)
        return {"from": str(from_ms), "to": str(to_ms)}, from_ms, to_ms

    # -- pages --------------------------------------------------------------------------
    async def overview(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        window, from_ms, to_ms = self.window(request, 1)
        bucket = "hour" if to_ms - from_ms <= 3 * _DAY_MS else "day"
        rows, series, timing, kinds, agreement, drift = await asyncio.gather(
            self.query(request, gw, s, "overview", **window, limit=1000),
            self.query(request, gw, s, "runs_over_time", **window, bucket=bucket, limit=QueryLimits.of(gw.settings).max_result_rows),
            self.query(request, gw, s, "feedback_timing", **window, limit=1000),
            self.query(request, gw, s, "feedback_sources", **window, limit=100),
            self.query(request, gw, s, "labeller_agreement", **window, limit=100),
            self.query(request, gw, s, "drift_alerts", **window, limit=50))
        points: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for r in series:  # one row per agent, version and bucket: a few thousand at most
            points.setdefault((r["agent_id"], r["model_version"]), []).append((_ts_ms(r["bucket_start"]) or 0, r["runs"]))
        trends = {k: charts.sparkline(v, width=120, height=28) for k, v in points.items()}
        return self.render(request, "overview.html", s, title="Overview", rows=rows, trends=trends, bucket=bucket, timing=timing, kinds=kinds,
                           agreement=agreement, drift=drift, from_ms=from_ms, to_ms=to_ms,
                           from_raw=request.query.get("from", ""), to_raw=request.query.get("to", ""))

    async def experiments(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        configs = sorted((r for r in gw.experiments.configs().values() if r.get("tenant_id") == s.tenant_id),
                         key=lambda r: r["experiment_id"])
        errors: list[str] = []
        latest, outcomes = await asyncio.gather(
            self.maybe(self.query(request, gw, s, "experiment_metrics", limit=5000), errors),
            self.maybe(self.query(request, gw, s, "experiment_outcomes", limit=1000), errors))
        by_id = {r["experiment_id"]: r for r in latest if r["metric_role"] == "primary"}
        decided = {r["experiment_id"]: r for r in outcomes}
        rows = []
        for c in configs:
            total = sum(v["weight"] for v in c["variants"]) or 1.0
            stats = by_id.get(c["experiment_id"], {})
            units = {a["variant"]: a["n"] for a in stats.get("metric_arms") or []}
            rows.append({"config": c, "split": [(v["name"], v["model_version"], v["weight"] / total) for v in c["variants"]],
                         "units": [(v["name"], units.get(v["name"])) for v in c["variants"]],
                         "decision": decided.get(c["experiment_id"])})
        finished = [r for r in rows if r["decision"] is not None or r["config"]["status"] in ("stopped", "rolled_back", "concluded")]
        times = [d["time_to_decision_s"] for d in decided.values() if d.get("time_to_decision_s") is not None]
        deltas = [d["estimate_at_decision"] for d in decided.values() if d.get("estimate_at_decision") is not None]
        summary = {"total": len(rows), "finished": len(finished),
                   "completion_rate": len(finished) / len(rows) if rows else None,
                   "median_time_to_decision_s": statistics.median(times) if times else None,
                   "decided": len(decided), "mean_delta": statistics.fmean(deltas) if deltas else None,
                   "median_delta": statistics.median(deltas) if deltas else None}
        return self.render(request, "experiments.html", s, title="Experiments", rows=rows, summary=summary, errors=errors)

    async def experiment(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        config = request.app[EXPERIMENTS].own(path_id(request, "experiment_id"), s.tenant_id).to_record()
        exp_id = config["experiment_id"]
        snapshots, metrics, outcomes = await asyncio.gather(
            self.query(request, gw, s, "experiment_snapshots", experiment_id=exp_id, limit=2000),
            self.query(request, gw, s, "experiment_metrics", experiment_id=exp_id, limit=100),
            self.query(request, gw, s, "experiment_outcomes", experiment_id=exp_id, limit=1))
        series = []
        for snap in snapshots:
            comp = (snap.get("comparisons") or [{}])[0]
            series.append({"ts_ms": _ts_ms(snap["ts"]), "n": sum(a["n"] for a in snap.get("arms") or []),
                           "estimate": comp.get("estimate"), "lo": comp.get("ci_low"), "hi": comp.get("ci_high")})
        plot = charts.cs_layout(series)
        last = snapshots[-1] if snapshots else None
        comparison = ((last or {}).get("comparisons") or [None])[0]
        labelled = ((last or {}).get("labelled_comparisons") or [None])[0]
        guardrails = []
        for m in metrics:
            if m["metric_role"] != "guardrail":
                continue
            try:
                details = json.loads(m["metric_details_json"] or "{}")
            except ValueError:
                details = {}
            verdicts = {v: (d.get("guardrail") or {}).get("status", "–") for v, d in (details.get("comparisons") or {}).items()}
            guardrails.append({"metric": m["metric"], "status": m["metric_status"], "verdicts": verdicts})
        decision = outcomes[0] if outcomes else None
        evidence = None
        if decision:
            try:
                evidence = json.dumps(json.loads(decision["evidence_json"] or "{}"), indent=2, sort_keys=True)
            except ValueError:
                evidence = decision["evidence_json"]
        metric = config["primary_metric"]["name"]
        return self.render(request, "experiment.html", s, title=exp_id, config=config, plot=plot, last=last, comparison=comparison,
                           labelled=labelled, guardrails=guardrails, decision=decision, evidence=evidence, metric=metric,
                           stream_url=f"/dashboard/experiments/{exp_id}/stream")

    async def stream(self, request: web.Request, gw: "Gateway") -> web.StreamResponse:
        try:
            s = self.session(request, gw)
        except LoginRequired:
            raise ApiError(401, "unauthorized", COOKIE, "no dashboard session: log in at /dashboard/login") from None
        ex = request.app[EXPERIMENTS]
        config = ex.own(path_id(request, "experiment_id"), s.tenant_id)
        return await stream_response(request, ex.streams, config.experiment_id)

    async def models(self, request: web.Request, gw: "Gateway", s: Session, notice: str | None = None,
                     error: ApiError | None = None) -> web.StreamResponse:
        models, jobs, store = request.app[MODELS], request.app[TRAINING_JOBS], request.app[DATASETS]
        errors: list[str] = [error.reason] if error else []
        done, done_version = request.query.get("done"), request.query.get("version", "")
        if notice is None and done in ("promote", "retire") and error is None:
            notice = f"{done_version[:200]}: {'promoted to champion' if done == 'promote' else 'retired'}"

        def read_files() -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
            versions = models.versions(s.tenant_id)[:200]
            by_version: dict[str, Any] = {}
            for rec in jobs.store.list():
                if rec.tenant_id == s.tenant_id and rec.model_version and rec.model_version not in by_version:
                    by_version[rec.model_version] = (rec, jobs.store.progress(rec, jobs.checkpoints))
            datasets = {m.dataset_id: m for m in store.list() if m.tenant_id == s.tenant_id}
            return versions, by_version, datasets

        (versions, by_version, datasets), outcomes = await asyncio.gather(
            asyncio.to_thread(read_files), self.maybe(self.query(request, gw, s, "experiment_outcomes", limit=1000), errors))
        decided = {r["experiment_id"]: r for r in outcomes}
        rows = []
        for v in versions:
            rec, progress = by_version.get(v["model_version"], (None, None))
            history = (progress or {}).get("history") or []
            metrics = {**(v.get("metrics") or {}), **(rec.metrics if rec else {})}
            experiment_id = rec.experiment_id if rec else ""
            rows.append({"version": v, "job": rec, "loss": charts.sparkline([(h[0], h[1]) for h in history if len(h) >= 2]),
                         "metrics": metrics, "dataset": datasets.get(v.get("dataset_id") or (rec.dataset_id if rec else "")),
                         "dataset_id": v.get("dataset_id") or (rec.dataset_id if rec else ""),
                         "experiment_id": experiment_id, "decision": decided.get(experiment_id),
                         "resources": {k: val for k, val in metrics.items() if k.startswith(("resource_", "peak_", "gpu_", "cpu_"))}})
        return self.render(request, "models.html", s, status=error.status if error else 200, title="Models", rows=rows,
                           errors=errors, notice=notice)

    async def model_action(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        verb = request.match_info["verb"]
        version = request.match_info["model_version"]
        form = await request.post()
        try:
            if verb not in ("promote", "retire"):
                raise ApiError(404, "not_found", "verb", f"no action {verb[:20]!r}: promote or retire")
            check_csrf(request, request.cookies.get(COOKIE, ""), form.get("csrf_token"))
            if not s.is_admin:
                raise ApiError(403, "forbidden_scope", "Authorization", "the key lacks the scope admin")
            version = path_id(request, "model_version")
            mv = await apply(request.app[MODELS], verb, version, s.tenant_id)
        except ApiError as exc:
            audit(request, f"model.{verb}"[:64], version, exc.status, detail=f"{exc.field}: {exc.reason}")
            return await self.models(request, gw, s, error=exc)
        audit(request, f"model.{verb}", version, 200, detail="dashboard")
        raise web.HTTPSeeOther(f"/dashboard/models?done={verb}&version={mv.model_version}")

    async def datasets(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        manifests = await asyncio.to_thread(request.app[DATASETS].list)
        mine = sorted((m for m in manifests if m.tenant_id == s.tenant_id), key=lambda m: m.created_ms, reverse=True)
        real = [m for m in mine if m.kind != "synthetic"]
        synthetic = []
        for m in mine:
            if m.kind != "synthetic":
                continue
            q = (m.counts or {}).get("quality") or {}
            candidates, accepted = q.get("candidates") or 0, q.get("accepted") or 0
            synthetic.append({"m": m, "diversity": (q.get("diversity") or {}).get("score"),
                              "real_diversity": (q.get("real_diversity") or {}).get("score"),
                              "acceptance": accepted / candidates if candidates else None, "accepted": accepted,
                              "candidates": candidates, "rejected": q.get("rejected") or {},
                              "speed": (q.get("timing") or {}).get("scenarios_per_s"), "families": q.get("by_family") or {}})
        return self.render(request, "datasets.html", s, title="Datasets", real=real, synthetic=synthetic)

    async def dead_letters(self, request: web.Request, gw: "Gateway", s: Session) -> web.StreamResponse:
        window, from_ms, to_ms = self.window(request, 7)
        counts, latest = await asyncio.gather(self.query(request, gw, s, "dead_letters", **window, limit=200),
                                              self.query(request, gw, s, "dead_letters_latest", **window, limit=50))
        return self.render(request, "dead_letters.html", s, title="Dead letters", counts=counts, latest=latest,
                           from_ms=from_ms, to_ms=to_ms, from_raw=request.query.get("from", ""), to_raw=request.query.get("to", ""))


PageHandler = Callable[[web.Request, "Gateway", Session], Awaitable[web.StreamResponse]]
