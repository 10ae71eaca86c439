"""Who may see and do what: access closed until configured, HTTP basic, CSRF tokens, security headers.

Access is decided once per request by :class:`Guard`, a plain ASGI middleware (plain so that
the event stream is not buffered): an ``auth`` callable when the application gives one, else
HTTP basic credentials, else read-only mode when asked for; with none of these configured every
request is refused with a page saying how to open it. The role it finds is put in the request's
scope for the views, which hide every action from ``read_only`` and refuse its POSTs.

CSRF: a random token in a ``SameSite=Strict`` cookie, which every form repeats in a hidden field
(the double-submit pattern); a POST whose field does not match the cookie is refused. No view
changes state on GET.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: What an ``auth`` callable grants: everything, looking only, or nothing (None).
Role: TypeAlias = Literal["admin", "read_only"]
AuthCallable: TypeAlias = Callable[[HTTPConnection], "Role | Awaitable[Role | None] | None"]

ADMIN: Role = "admin"
READ_ONLY: Role = "read_only"

CSRF_COOKIE = "jobkit_csrf"
CSRF_FIELD = "csrf"

#: No script but the dashboard's own file, no inline code, no framing by other sites.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cache-control", b"no-store"),
]

CLOSED = (
    "The jobkit dashboard is closed until access is configured: set JOBKIT_DASHBOARD_USER and "
    "JOBKIT_DASHBOARD_PASSWORD (HTTP basic), or JOBKIT_DASHBOARD_READ_ONLY=true (anyone may look, "
    "nobody may act), or pass auth= to jobkit.dashboard.app().\n"
)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True, slots=True)
class Access:
    """How requests are let in; see :meth:`configure` for the defaults read from the environment."""

    auth: AuthCallable | None = None
    user: str | None = None
    password: str | None = None
    read_only: bool = False

    @classmethod
    def configure(
        cls,
        auth: AuthCallable | None = None,
        *,
        read_only: bool | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> Access:
        """Arguments over ``JOBKIT_DASHBOARD_USER``, ``_PASSWORD`` and ``_READ_ONLY``."""
        if read_only is None:
            read_only = _truthy(os.environ.get("JOBKIT_DASHBOARD_READ_ONLY"))
        user = user if user is not None else os.environ.get("JOBKIT_DASHBOARD_USER") or None
        password = password if password is not None else os.environ.get("JOBKIT_DASHBOARD_PASSWORD") or None
        if (user is None) != (password is None):
            raise ValueError("the dashboard needs both JOBKIT_DASHBOARD_USER and JOBKIT_DASHBOARD_PASSWORD, or neither")
        return cls(auth=auth, user=user, password=password, read_only=read_only)

    @property
    def configured(self) -> bool:
        """Whether anyone can get in at all."""
        return self.auth is not None or self.user is not None or self.read_only

    async def admit(self, conn: HTTPConnection) -> tuple[Role | None, str, bool]:
        """The request's role (None: refused), who it is for the audit log, and whether to ask for credentials."""
        if self.auth is not None:
            granted = self.auth(conn)
            if inspect.isawaitable(granted):
                granted = await granted
            if granted not in (ADMIN, READ_ONLY, None):
                raise ValueError(
                    f"the dashboard's auth callable must return 'admin', 'read_only' or None, got {granted!r}"
                )
            actor = getattr(conn.state, "jobkit_actor", None) or (conn.client.host if conn.client else "operator")
            return self._capped(granted), str(actor), False
        if self.user is not None and self.password is not None:
            given = _basic_credentials(conn.headers.get("authorization"))
            if given is None:
                return None, "", True
            user_ok = hmac.compare_digest(given[0].encode(), self.user.encode())
            password_ok = hmac.compare_digest(given[1].encode(), self.password.encode())
            if not (user_ok and password_ok):
                return None, "", True
            return self._capped(ADMIN), given[0], False
        if self.read_only:
            return READ_ONLY, "anonymous", False
        return None, "", False

    def _capped(self, role: Role | None) -> Role | None:
        if role is None:
            return None
        return READ_ONLY if self.read_only else role


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def csrf_ok(cookie: str | None, field: object) -> bool:
    """Whether a POST's form field repeats the request's CSRF cookie."""
    if not cookie or not isinstance(field, str) or not field:
        return False
    return hmac.compare_digest(cookie.encode(), field.encode())


class Guard:
    """ASGI middleware: security headers on every response, access decided before any view runs."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        cookie = conn.cookies.get(CSRF_COOKIE)
        fresh = None if cookie else secrets.token_urlsafe(32)
        token = cookie or fresh

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(HEADERS)
                if fresh is not None:
                    path = scope.get("root_path") or "/"
                    secure = "; Secure" if scope.get("scheme") == "https" else ""
                    headers.append(
                        (
                            b"set-cookie",
                            f"{CSRF_COOKIE}={fresh}; Path={path}; HttpOnly; SameSite=Strict{secure}".encode(),
                        )
                    )
                message = {**message, "headers": headers}
            await send(message)

        if not self.access.configured:
            response: Response = PlainTextResponse(CLOSED, status_code=403)
            await response(scope, receive, send_with_headers)
            return
        role, actor, challenge = await self.access.admit(conn)
        if role is None:
            headers = {"WWW-Authenticate": 'Basic realm="jobkit", charset="UTF-8"'} if challenge else None
            response = PlainTextResponse("Not allowed.\n", status_code=401 if challenge else 403, headers=headers)
            await response(scope, receive, send_with_headers)
            return
        scope["jobkit.role"] = role
        scope["jobkit.actor"] = actor
        scope["jobkit.csrf"] = token
        await self.app(scope, receive, send_with_headers)
