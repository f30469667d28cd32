"""The web dashboard, served by the API: server-rendered pages for ops and analysts, scoped to a key's tenant.

    GET  /dashboard/login, POST /dashboard/login, POST /dashboard/logout   the session (an API key, scope read)
    GET  /dashboard/                       overview: runs, success, latency, tokens, cost; feedback; labeller; drift
    GET  /dashboard/experiments            experiments, their split, units, status and decision; summary figures
    GET  /dashboard/experiments/{id}       one experiment: the confidence sequence (live), p-value, SRM, guardrails, decision
    GET  /dashboard/experiments/{id}/stream   its Server-Sent Events (the API's stream, authenticated by the session)
    GET  /dashboard/models                 the registry and each version's lineage; promote/retire for admin keys
    POST /dashboard/models/{version}/{promote|retire}
    GET  /dashboard/datasets               datasets (kind, size, quality report, held-out split) and synthetic runs
    GET  /dashboard/dead-letters           dead letters by topic and reason, and the latest records
    GET  /dashboard/static/{name}          dashboard.js, dashboard.css

Pages are Jinja2 templates (autoescaped) rendered next to the store; charts are inline
SVG drawn on the server (:mod:`agentgym.gateway.dashboard.charts`). One small
hand-written script (``static/dashboard.js``, no build step, no third-party code) follows
an experiment's stream with the browser's ``EventSource`` and grows its plot. Why this
design, and what each page shows: ``docs/dashboard.md``. Sessions and CSRF:
:mod:`agentgym.gateway.dashboard.session`; data: :mod:`agentgym.gateway.dashboard.pages`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentgym.gateway.audit import KEY_SLOT, audit
from agentgym.gateway.dashboard.pages import _QUERIES, LoginRequired, PageHandler, Pages
from agentgym.gateway.dashboard.session import clear_cookie
from agentgym.gateway.exceptions import ApiError

if TYPE_CHECKING:
    from agentgym.gateway.app import Gateway

__all__ = ["add_routes", "Pages"]

Plain = Callable[[web.Request, "Gateway"], Awaitable[web.StreamResponse]]


def _wrap(gateway: "web.AppKey[Gateway]", pages: Pages, route: str, fn: Plain) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Errors as the error page (the API's message in ``p.error``), no session as a redirect to the login, metrics."""

    async def handle(request: web.Request) -> web.StreamResponse:
        gw = request.app[gateway]
        t0 = time.perf_counter()
        try:
            resp = await fn(request, gw)
        except LoginRequired:
            resp = web.HTTPSeeOther("/dashboard/login")
            if request.cookies.get("agentgym_session"):
                clear_cookie(resp, request)
        except web.HTTPRedirection as redirect:
            resp = redirect
        except ApiError as exc:
            gw.metrics.rejections.labels(exc.error).inc()
            resp = pages.error(request, exc, None)
        gw.metrics.observe(route, resp.status, time.perf_counter() - t0)
        return resp

    return handle


def _page(pages: Pages, fn: PageHandler, audited: bool = True) -> Plain:
    """A page that needs a session; its view is audited (``dashboard.view``) with the queries it ran."""

    async def handle(request: web.Request, gw: "Gateway") -> web.StreamResponse:
        session = pages.session(request, gw)
        try:
            resp = await fn(request, gw, session)
        except ApiError as exc:
            resp = pages.error(request, exc, session)
        except web.HTTPRedirection:
            raise
        except Exception as exc:
            audit(request, "dashboard.view", request.path[:512], 500, detail=f"{type(exc).__name__}: {str(exc)[:300]}")
            raise
        if audited and request.get(KEY_SLOT) is not None:
            audit(request, "dashboard.view", request.path[:512], resp.status,
                  detail="queries: " + ", ".join(request.get(_QUERIES, [])))
        return resp

    return handle


def add_routes(app: web.Application, gateway: "web.AppKey[Gateway]") -> None:
    """Adds the dashboard's routes (the experiment, model, dataset and job groups must be added too)."""
    pages = Pages()

    def add(method: str, path: str, route: str, fn: Plain) -> None:
        app.router.add_route(method, path, _wrap(gateway, pages, f"dashboard_{route}", fn))

    async def to_overview(request: web.Request, gw: Any) -> web.StreamResponse:
        raise web.HTTPFound("/dashboard/")

    add("GET", "/dashboard", "root", to_overview)
    add("GET", "/dashboard/login", "login_form", pages.login_form)
    add("POST", "/dashboard/login", "login", pages.login)
    add("POST", "/dashboard/logout", "logout", pages.logout)
    add("GET", "/dashboard/static/{name}", "static", pages.static)
    add("GET", "/dashboard/", "overview", _page(pages, pages.overview))
    add("GET", "/dashboard/experiments", "experiments", _page(pages, pages.experiments))
    add("GET", "/dashboard/experiments/{experiment_id}", "experiment", _page(pages, pages.experiment))
    add("GET", "/dashboard/experiments/{experiment_id}/stream", "experiment_stream", pages.stream)
    add("GET", "/dashboard/models", "models", _page(pages, pages.models))
    add("POST", "/dashboard/models/{model_version}/{verb}", "model_action", _page(pages, pages.model_action, audited=False))
    add("GET", "/dashboard/datasets", "datasets", _page(pages, pages.datasets))
    add("GET", "/dashboard/dead-letters", "dead_letters", _page(pages, pages.dead_letters))
