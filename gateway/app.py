"""The Agent Gym API: one authenticated, tenant-scoped, rate-limited front door (aiohttp).

    POST /v1/experiences                          runs: one object or {"events": [...]}   scope ingest
    POST /v1/feedback                             feedback: likewise                      scope ingest
    POST /v1/traces                               OTLP/HTTP trace export (GenAI spans)   scope ingest
    GET  /v1/experiments/{id}/assignment?unit_id  the SDK's assignment hash               scope ingest or read
    GET  /v1/analytics/queries[/{name}]           named analytics queries, the key's tenant only  scope read
                                                  (:mod:`agentgym.gateway.analytics`; audited, :mod:`agentgym.gateway.audit`)
    GET  /v1/annotations/next, POST /v1/annotations/{trace_id}   the audit sample's annotation queue  scope annotate or admin
                                                  (:mod:`agentgym.gateway.annotations`)
    GET  /healthz  /readyz  /metrics  /openapi.json                                        no key
    /dashboard/...                                the web dashboard: HTML pages, a session cookie holding a read key
                                                  (:mod:`agentgym.gateway.dashboard`; not in the OpenAPI document)
    /v1/experiments, /v1/datasets, /v1/models, /v1/training-jobs   resource routes (their own modules)  scope read / admin
    POST/GET /v1/privacy/deletions                delete a user's data (:mod:`agentgym.gateway.privacy`)  scope admin

Every other request needs ``Authorization: Bearer <key>`` (:mod:`agentgym.gateway.keys`):
401 without a valid key, 403 without the scope or when a body field or the
``X-AgentGym-Tenant`` header names another tenant than the key's. Then, in order: the
key's token bucket (429 + ``Retry-After``), the body within its limits
(:mod:`agentgym.gateway.body`), every event validated and encoded
(:mod:`agentgym.gateway.ingest`), the tenant's plan (429 naming the plan and the
limit), and only then is anything produced. Errors are JSON naming the field and
the reason.

A process holds one SDK client (one producer, one spool), the followers of the keys,
plans, usage and experiments topics, and its token buckets; it holds no other state,
so replicas scale out behind a balancer. ``agentgym gateway run --workers N`` starts N
processes on one port (``SO_REUSEPORT``).

Adding a route (experiments, datasets, models, jobs, analytics): write
``async def handler(request, gw) -> web.Response`` that calls
``gw.authenticate(request, scopes)`` first and raises :class:`ApiError` for every
refusal (it becomes the JSON error and the rejection metric), register it with
``_endpoint(route_name, handler)`` in :func:`create_app`, and describe it in
:mod:`agentgym.gateway.openapi`: the schemathesis test fuzzes every documented route.
Scope reads by ``key.tenant_id``; another tenant's resource is a 404.
"""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import gc
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from agentgym.gateway import analytics
from agentgym.gateway import annotations
from agentgym.gateway import dashboard
from agentgym.gateway import datasets as datasets_routes
from agentgym.gateway import experiments as experiments_routes
from agentgym.gateway import jobs as jobs_routes
from agentgym.gateway import models as models_routes
from agentgym.gateway import privacy as privacy_routes
from agentgym.gateway import synth as synth_routes
from agentgym.gateway.audit import AUDITOR, KEY_SLOT, Auditor
from agentgym.gateway import otlp
from agentgym.gateway.body import events_of, read_json
from agentgym.gateway.exceptions import ApiError, InvalidIdError
from agentgym.gateway.fastpath import GatewayRunner
from agentgym.gateway.ids import check_id
from agentgym.gateway.ingest import EXPERIENCE, FEEDBACK, Kind, Prepared, prepare
from agentgym.gateway.keys import ApiKey, KeyRing
from agentgym.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from agentgym.gateway.openapi import openapi_document
from agentgym.gateway.masking import TenantMaskers
from agentgym.gateway.plans import TenantPlans
from agentgym.gateway.ratelimit import TokenBuckets
from agentgym.gateway.settings import GatewaySettings
from agentgym.gateway.usage import UsageMeter, month_of
from agentgym.producers.assignment import assign
from agentgym.producers.client import AgentGym
from agentgym.producers.follower import ExperimentFollower
from agentgym.producers.settings import ProducerSettings
from agentgym.schemas.codec import AvroCodec
from agentgym.schemas.topics import TOPICS

__all__ = ["Gateway", "create_app", "make_runner", "make_site", "run"]

log = logging.getLogger("agentgym.gateway")
access_log = logging.getLogger("agentgym.gateway.access")

_INGEST = frozenset({"ingest"})
_ASSIGN = frozenset({"ingest", "read"})
_USAGE_TOPIC = TOPICS["tenant-usage"].name


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json", headers=headers)


class Gateway:
    """What one gateway process holds (built on the app's startup, closed on its cleanup).

    Args:
        settings: the gateway's settings.
        worker: this process's index among the workers (names its spool directory).
    """

    def __init__(self, settings: GatewaySettings, worker: int = 0) -> None:
        self.settings = settings
        self.metrics = GatewayMetrics()
        self.buckets = TokenBuckets()
        self.client = AgentGym(settings=ProducerSettings(
            bootstrap_servers=settings.bootstrap_servers, tenant_id="gateway", agent_id="gateway",
            spool_dir=settings.spool_root / f"worker-{worker}", mask_enabled=False),  # masked per tenant and agent
            background_polling=False)  # its delivery reports are served from the event loop (_serve_deliveries)
        self.keys = KeyRing(settings.bootstrap_servers).start()
        self.maskers = TenantMaskers(settings.bootstrap_servers, settings.mask_secret.get_secret_value()).start()
        self.plans = TenantPlans(settings.bootstrap_servers, settings.default_plan).start()
        self.usage = UsageMeter(settings.bootstrap_servers).start()
        self.experiments = ExperimentFollower(settings.bootstrap_servers).start()
        self.codec = AvroCodec()
        self.openapi = orjson.dumps(openapi_document())

    def waiting(self) -> list[str]:
        """The followers not yet read to their ends (empty: ready)."""
        parts = {"api_keys": self.keys.ready, "plans": self.plans.ready, "usage": self.usage.ready, "experiments": self.experiments.ready,
                 "masking": self.maskers.ready}
        return [name for name, ok in parts.items() if not ok]

    def close(self) -> None:
        for part in (self.keys, self.plans, self.usage, self.experiments, self.maskers):
            part.close()
        self.publish_usage()
        self.client.close()

    # -- per request ------------------------------------------------------------
    def authenticate(self, request: web.Request, scopes: frozenset[str]) -> ApiKey:
        """The caller's key, or 401/403; then its token bucket (429)."""
        headers = request.headers
        return self.key_of(headers.get("Authorization"), headers.get("X-AgentGym-Tenant"), scopes, request)

    def key_of(self, authorization: str | None, named_tenant: str | None, scopes: frozenset[str],
               request: web.Request | None = None) -> ApiKey:
        """:meth:`authenticate` from the header values (the fast path has no ``web.Request``)."""
        if not authorization:
            raise ApiError(401, "unauthorized", "Authorization", "is missing: send 'Authorization: Bearer <key>'",
                           headers={"WWW-Authenticate": 'Bearer realm="agentgym"'})
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "Authorization", "must be 'Bearer <key>'", headers={"WWW-Authenticate": 'Bearer realm="agentgym"'})
        return self.check_key(token.strip(), named_tenant, scopes, request)

    def authorize(self, request: web.Request, token: str, scopes: frozenset[str]) -> ApiKey:
        """:meth:`authenticate` for a key that came otherwise (the dashboard's session cookie)."""
        return self.check_key(token, request.headers.get("X-AgentGym-Tenant"), scopes, request)

    def check_key(self, token: str, named_tenant: str | None, scopes: frozenset[str], request: web.Request | None) -> ApiKey:
        """The key of ``token`` if it is active, has one of ``scopes``, is of ``named_tenant`` (when named) and
        has a token left in its bucket; else the 401, 403 or 429."""
        key = self.keys.verify(token)
        if key is None:
            raise ApiError(401, "unauthorized", "Authorization", "unknown or revoked API key",
                           headers={"WWW-Authenticate": 'Bearer realm="agentgym", error="invalid_token"'})
        if request is not None:
            request[KEY_SLOT] = key  # who, for the audit log (also when refused below)
        if not key.scopes & scopes:
            raise ApiError(403, "forbidden_scope", "Authorization", f"the key lacks the scope {' or '.join(sorted(scopes))}")
        if named_tenant is not None and named_tenant != key.tenant_id:
            raise ApiError(403, "forbidden_tenant", "X-AgentGym-Tenant", "names another tenant than the API key's")
        plan = self.plans.plan_of(key.tenant_id)
        rate = plan.rate_per_s or self.settings.rate_per_s
        burst = plan.burst or self.settings.burst
        wait = self.buckets.take(key.key_id, rate, burst)
        if wait:
            raise ApiError(429, "rate_limited", "Authorization", f"rate limit of {rate:g} requests/s per key (burst {burst:g}) exceeded",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        return key

    def ingest(self, kind: Kind, key: ApiKey, body: Any, header_agent: str | None) -> dict[str, Any]:
        """Validates, masks and encodes every event of a parsed body, checks the plan, then produces them all
        (nothing before every event was encoded); the 202's body. Shared by both request paths."""
        s = self.settings
        events, batched = events_of(body, s.max_events)
        if header_agent is not None:
            try:
                check_id("X-AgentGym-Agent", header_agent)
            except InvalidIdError as exc:
                raise ApiError(400, "invalid_event", exc.field, exc.reason) from None
        tenant = key.tenant_id
        prepared = prepare(self.client, kind, events, tenant, header_agent, s.max_event_bytes, batched,
                           masking=lambda agent: self.maskers.policy(tenant, agent))
        if kind is EXPERIENCE:
            self.check_plan(tenant, prepared)
        send = self.client.send_encoded
        for p in prepared:  # nothing is produced before every event of the request was encoded
            send(kind.record, kind.topic, p.key, p.value)
        self.metrics.count_events(kind.record, len(prepared))
        return {"accepted": len(prepared), kind.id_name: [p.event_id for p in prepared]}

    def assignment(self, key: ApiKey, experiment_id: str, unit_id: str | None) -> dict[str, Any]:
        """The body of ``GET /v1/experiments/{id}/assignment``: the SDK's hash, the key's tenant only."""
        if not unit_id:
            raise ApiError(400, "invalid_request", "unit_id", "is missing: ?unit_id=<the user, session or trace>")
        if len(unit_id) > 512:
            raise ApiError(400, "invalid_request", "unit_id", f"is {len(unit_id)} characters; at most 512")
        config = self.experiments.get(experiment_id)
        if config is None or config.get("tenant_id") != key.tenant_id:  # another tenant's experiment does not exist for this key
            raise ApiError(404, "not_found", "experiment_id", f"no experiment {experiment_id[:80]!r} for this tenant")
        a = assign(config, unit_id)
        body = None if a is None else {
            "experiment_id": a.experiment_id, "variant": a.variant, "model_version": a.model_version, "unit_type": a.unit_type,
            "unit_id": a.unit_id, "config_version": a.config_version, "status": a.status, "active": a.active}
        return {"experiment_id": experiment_id, "unit_id": unit_id, "assignment": body}

    def answered(self, route: str, method: str, path: str, status: int, elapsed: float) -> None:
        """Metrics and the sampled access log of one answered request (both request paths)."""
        self.metrics.observe(route, status, elapsed)
        sample = self.settings.access_log_sample
        if sample and random.random() < sample:
            access_log.info("%s %s %d %.2fms", method, path, status, elapsed * 1000)

    def check_plan(self, tenant_id: str, prepared: list[Prepared]) -> None:
        """Refuses (429) runs over the tenant's plan; else counts them."""
        plan = self.plans.plan_of(tenant_id)
        month = month_of()
        runs, agents = self.usage.usage(tenant_id, month)
        batch_agents = {p.agent_id for p in prepared}
        if plan.max_agents is not None and len(agents | batch_agents) > plan.max_agents:
            raise ApiError(429, "plan_limit", "agent_id",
                           f"plan {plan.name!r} allows {plan.max_agents} agent(s) per month; {len(agents)} already sent in {month}",
                           headers={"Retry-After": str(_seconds_to_next_month())})
        if plan.max_runs_per_month is not None and runs + len(prepared) > plan.max_runs_per_month:
            raise ApiError(429, "plan_limit", "events",
                           f"plan {plan.name!r} allows {plan.max_runs_per_month} runs per month; {runs} used in {month}, "
                           f"this request has {len(prepared)}", headers={"Retry-After": str(_seconds_to_next_month())})
        self.usage.add(tenant_id, month, len(prepared), batch_agents)

    def publish_usage(self) -> None:
        for record in self.usage.reports():
            self.client.send_encoded("TenantUsage", _USAGE_TOPIC, record["usage_key"],
                                     self.codec.encode("TenantUsage", record, _USAGE_TOPIC))


GATEWAY = web.AppKey("gateway", Gateway)
Handler = Callable[[web.Request, Gateway], Awaitable[web.Response]]


def _seconds_to_next_month() -> int:
    t = time.gmtime()
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return max(1, int(calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) - time.time()))


def _endpoint(route: str, fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Wraps a handler: errors as JSON, metrics, sampled access log."""

    async def handle(request: web.Request) -> web.Response:
        gw = request.app[GATEWAY]
        t0 = time.perf_counter()
        try:
            resp = await fn(request, gw)
        except ApiError as exc:
            gw.metrics.rejections.labels(exc.error).inc()
            resp = _json(exc.body(), exc.status, exc.headers)
            if exc.status in (408, 413):  # the rest of the body is unread: do not reuse the connection
                resp.force_close()
        gw.answered(route, request.method, request.path, resp.status, time.perf_counter() - t0)
        return resp

    return handle


def _ingest(kind: Kind) -> Handler:
    async def handle(request: web.Request, gw: Gateway) -> web.Response:
        key = gw.authenticate(request, _INGEST)
        body = await read_json(request, gw.settings)
        return _json(gw.ingest(kind, key, body, request.headers.get("X-AgentGym-Agent")), 202)

    return handle


async def _assignment(request: web.Request, gw: Gateway) -> web.Response:
    key = gw.authenticate(request, _ASSIGN)
    return _json(gw.assignment(key, request.match_info["experiment_id"], request.query.get("unit_id")))


async def _healthz(request: web.Request, gw: Gateway) -> web.Response:
    # events this replica could neither deliver nor keep (a failing spool disk) or can never deliver (too large)
    return _json({"status": "ok", "events_dropped": gw.client.stats.get("dropped", 0),
                  "events_quarantined": gw.client.stats.get("quarantined", 0)})


async def _readyz(request: web.Request, gw: Gateway) -> web.Response:
    waiting = gw.waiting()
    return _json({"status": "starting", "waiting": waiting}, 503) if waiting else _json({"status": "ready", "waiting": []})


async def _metrics(request: web.Request, gw: Gateway) -> web.Response:
    body = gw.metrics.render(gw.client.queue_length, gw.client.stats)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _openapi(request: web.Request, gw: Gateway) -> web.Response:
    return web.Response(body=gw.openapi, content_type="application/json")


def create_app(settings: GatewaySettings | None = None, *, worker: int = 0) -> web.Application:
    """The gateway's aiohttp application; its :class:`Gateway` is built on startup and closed (flushed) on cleanup.

    Serve it with :func:`make_runner` (or :func:`run`): the body limits need aiohttp's
    automatic decompression off.
    """
    settings = settings or GatewaySettings()
    app = web.Application(client_max_size=settings.max_body_bytes)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        gw = app[GATEWAY] = await asyncio.to_thread(Gateway, settings, worker)
        app[AUDITOR] = Auditor(gw.client, gw.codec)
        tasks = [asyncio.create_task(_report_usage(gw)), asyncio.create_task(_serve_deliveries(gw))]
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(gw.close)

    app.cleanup_ctx.append(lifecycle)
    for path, route, handler in (
        ("/v1/experiences", "experiences", _ingest(EXPERIENCE)),
        ("/v1/feedback", "feedback", _ingest(FEEDBACK)),
    ):
        app.router.add_post(path, _endpoint(route, handler))
    app.router.add_get("/v1/experiments/{experiment_id}/assignment", _endpoint("assignment", _assignment))
    otlp.add_routes(app, _endpoint)  # POST /v1/traces: OTLP/HTTP
    for group in (experiments_routes, datasets_routes, models_routes, jobs_routes, synth_routes, privacy_routes):  # each builds its state after the Gateway's
        group.add_routes(app, _endpoint, GATEWAY)
    analytics.add_routes(app, _endpoint, settings)
    annotations.add_routes(app, _endpoint)  # the audit sample's annotation queue (reads through the analytics reader)
    dashboard.add_routes(app, GATEWAY)  # /dashboard/: server-rendered pages over the same data (docs/dashboard.md)
    app.router.add_get("/healthz", _endpoint("healthz", _healthz))
    app.router.add_get("/readyz", _endpoint("readyz", _readyz))
    app.router.add_get("/metrics", _endpoint("metrics", _metrics))
    app.router.add_get("/openapi.json", _endpoint("openapi", _openapi))
    return app


async def _report_usage(gw: Gateway) -> None:
    while True:
        await asyncio.sleep(gw.settings.usage_report_s)
        try:
            gw.publish_usage()
        except Exception:  # the next round retries; the counts stay in memory
            log.exception("gateway: publishing usage failed")


async def _serve_deliveries(gw: Gateway, every_s: float = 0.02) -> None:
    """Serves the producer's delivery reports from the event loop, the thread that produces: confluent-kafka
    takes the GIL once per delivered event to serve its report, and from the client's background thread each
    of those was a GIL hand-off with this loop (batches of 100: 29k -> 38k events/s per process, measured
    with ``ops/bench/gateway.py``). A failed delivery is spooled here, as the background thread would."""
    while True:
        await asyncio.sleep(every_s)
        try:
            gw.client.poll()
        except Exception:  # the next round serves the rest
            log.exception("gateway: serving delivery reports failed")


def make_runner(app: web.Application, **kwargs: Any) -> web.AppRunner:
    """An ``AppRunner`` as the gateway needs it: no automatic decompression (the body
    limits apply to both sizes), no per-request access log (sampled in the handlers), the
    hot routes answered from the connection (:mod:`agentgym.gateway.fastpath`)."""
    return GatewayRunner(app, GATEWAY, auto_decompress=False, access_log=None, **kwargs)


def make_site(runner: web.AppRunner, settings: GatewaySettings, host: str | None = None,
              reuse_port: bool | None = None) -> web.TCPSite:
    """The listening site: https when ``settings`` name a certificate (``AGENTGYM_GATEWAY_TLS_*``), else http."""
    return web.TCPSite(runner, host or settings.host, settings.port, reuse_port=reuse_port,
                       ssl_context=settings.ssl_context())


async def _serve(settings: GatewaySettings, worker: int, reuse_port: bool) -> None:
    runner = make_runner(create_app(settings, worker=worker), handle_signals=True)
    await runner.setup()
    site = make_site(runner, settings, reuse_port=reuse_port or None)
    await site.start()
    # what startup built (modules, schemas, followers' first records) lives as long as the
    # process: out of the collector's sight, a full collection no longer walks it (~25 ms
    # here, a stall every request waiting at that moment would see in its latency)
    gc.collect()
    gc.freeze()
    log.info("gateway worker %d on %s://%s:%d", worker, settings.scheme, settings.host, settings.port)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _worker_main(settings: GatewaySettings, worker: int, reuse_port: bool) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt, web.GracefulExit):
        asyncio.run(_serve(settings, worker, reuse_port))


def run(settings: GatewaySettings | None = None) -> None:
    """Serves until interrupted: one process, or ``settings.workers`` processes on one port."""
    settings = settings or GatewaySettings()
    if settings.workers == 1:
        _worker_main(settings, 0, False)
        return
    import multiprocessing
    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _stop)  # a stopped parent stops its workers (they flush their producers)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(settings, i, True), name=f"agentgym-gateway-{i}") for i in range(settings.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.terminate()
        for p in procs:
            p.join(15)
