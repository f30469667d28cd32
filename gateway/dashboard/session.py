"""The dashboard's session: an API key in an HttpOnly cookie, checked like a bearer token on every request.

The cookie holds the key itself (``HttpOnly``, ``SameSite=Strict``, ``Path=/dashboard``,
``Secure`` over https, 12 hours), so every request is verified exactly as the API
verifies ``Authorization: Bearer``: same key ring, same scopes, same rate limit, and a
revoked key stops working on the next page load on every replica. No session state
lives in a gateway process, so ``--workers N`` and replicas behind a balancer need no
sticky sessions.

Changes (promote, retire, log out) are forms protected by a CSRF token: the HMAC-SHA256
of a fixed label keyed by the session's key. It is equivalent to an HMAC of the session
under a per-process secret (only the holder of the session can compute it; a page of
another origin can read neither the cookie nor the token), and unlike one it is valid on
every worker process. ``SameSite=Strict`` already keeps the cookie off cross-site
requests; the token is the second lock. A POST whose ``Origin`` names another host is
refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from aiohttp import web

from agentgym.gateway.exceptions import ApiError
from agentgym.gateway.keys import ApiKey

__all__ = ["COOKIE", "MAX_AGE_S", "Session", "csrf_token", "check_csrf", "set_cookie", "clear_cookie", "is_https"]

COOKIE = "agentgym_session"
MAX_AGE_S = 12 * 3600
PATH = "/dashboard"
_CSRF_LABEL = b"agentgym-dashboard-csrf/1"


@dataclass(frozen=True)
class Session:
    """A verified dashboard session: the key's identity and the CSRF token of its forms."""

    key: ApiKey
    csrf: str

    @property
    def tenant_id(self) -> str:
        return self.key.tenant_id

    @property
    def is_admin(self) -> bool:
        return "admin" in self.key.scopes


def csrf_token(token: str) -> str:
    """The CSRF token of the session whose key is ``token`` (hex HMAC-SHA256)."""
    return hmac.new(token.encode(), _CSRF_LABEL, hashlib.sha256).hexdigest()


def check_csrf(request: web.Request, token: str, given: object) -> None:
    """Refuses (403) a form without the session's CSRF token, or posted from another origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and origin.split("://", 1)[-1] != request.host:
        raise ApiError(403, "csrf", "Origin", "the form was posted from another origin")
    if not isinstance(given, str) or not hmac.compare_digest(given, csrf_token(token)):
        raise ApiError(403, "csrf", "csrf_token", "missing or wrong CSRF token: reload the page and try again")


def is_https(request: web.Request) -> bool:
    """Whether the browser talks https to us (directly, or to a proxy that says so)."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


def set_cookie(resp: web.StreamResponse, request: web.Request, token: str) -> None:
    resp.set_cookie(COOKIE, token, max_age=MAX_AGE_S, path=PATH, httponly=True, samesite="Strict", secure=is_https(request))


def clear_cookie(resp: web.StreamResponse, request: web.Request) -> None:
    resp.del_cookie(COOKIE, path=PATH, httponly=True, samesite="Strict", secure=is_https(request))
