"""The console's FastAPI application: settings, sign-in, CSRF, rendering and error pages.

Pages are in :mod:`mloop.console.pages` (reads) and :mod:`mloop.console.actions`
(writes, each a form POST done with the signed-in person's token).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from mloop.client import Endpoints, MloopClient
from mloop.client._exceptions import ApiError, AuthenticationError, TransportError
from mloop.console import fmt, plots
from mloop.console.auth import SESSION_COOKIE, Session, csrf_token, csrf_valid, origin_allowed, session_of

__all__ = ["ConsoleSettings", "Forbidden", "NotSignedIn", "create_app", "form_of", "render", "session", "user_api"]

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the services answer and how the console serves.

    ``environment`` other than ``development`` marks the session cookie
    ``Secure`` (the console is then expected behind HTTPS). ``csrf_key`` binds
    CSRF tokens to sessions; a random one per process is fine (a restart only
    invalidates open forms).
    """

    endpoints: Endpoints = field(default_factory=Endpoints)
    host: str = "127.0.0.1"
    port: int = 8100
    environment: str = "development"
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    public_origin: str | None = None
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ConsoleSettings:
        """From ``MLOOP_*_URL``, ``MLOOP_HTTP_HOST``/``MLOOP_HTTP_PORT``, ``MLOOP_ENVIRONMENT``,
        ``MLOOP_CONSOLE_CSRF_KEY`` and ``MLOOP_CONSOLE_ORIGIN`` (its URL as browsers see it, behind a proxy)."""
        key = env.get("MLOOP_CONSOLE_CSRF_KEY")
        return cls(
            endpoints=Endpoints.from_env(env),
            host=env.get("MLOOP_HTTP_HOST", "127.0.0.1"),
            port=int(env.get("MLOOP_HTTP_PORT", "8100")),
            environment=env.get("MLOOP_ENVIRONMENT", "development"),
            csrf_key=key.encode() if key else secrets.token_bytes(32),
            public_origin=env.get("MLOOP_CONSOLE_ORIGIN") or None,
        )

    @property
    def secure_cookie(self) -> bool:
        return self.environment != "development"


class NotSignedIn(Exception):
    """No valid session: the page redirects to the sign-in form."""


class Forbidden(Exception):
    """A form post without a valid CSRF token or from another origin."""


def session(request: Request) -> Session:
    """The signed-in person, or :class:`NotSignedIn`."""
    s = session_of(request.cookies.get(SESSION_COOKIE))
    if s is None:
        raise NotSignedIn()
    return s


def user_api(request: Request, who: Session) -> MloopClient:
    """The service clients acting as ``who`` (shared connection pool)."""
    base: MloopClient = request.app.state.api
    return base.with_token(who.token)


def _own_origin(request: Request) -> str:
    settings: ConsoleSettings = request.app.state.settings
    if settings.public_origin:
        return settings.public_origin
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


async def form_of(request: Request, who: Session | None) -> dict[str, str]:
    """The posted form, after the Origin check and (for a signed-in person) the CSRF check.

    Raises :class:`Forbidden` (answered 403) when either fails.
    """
    if not origin_allowed(request.headers.get("origin"), _own_origin(request)):
        raise Forbidden("this form was posted from another site")
    body = (await request.body()).decode("utf-8", errors="replace")
    form = dict(parse_qsl(body, keep_blank_values=True))
    if who is not None and not csrf_valid(request.app.state.settings.csrf_key, who.token, form.get("csrf")):
        raise Forbidden("the form's CSRF token is missing or does not belong to your session; reload the page")
    return form


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render a page; every page gets the session, its CSRF token and the current path."""
    env: Environment = request.app.state.templates
    who = session_of(request.cookies.get(SESSION_COOKIE))
    csrf = csrf_token(request.app.state.settings.csrf_key, who.token) if who else ""
    html = env.get_template(template).render(
        request=request, who=who, csrf=csrf, path=request.url.path, **context
    )
    return HTMLResponse(html, status_code=status_code)


def create_app(settings: ConsoleSettings) -> FastAPI:
    """The console app; its service clients open with the app and close with it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.api = MloopClient(settings.endpoints, None, timeout_s=settings.timeout_s)
        try:
            yield
        finally:
            await app.state.api.aclose()

    app = FastAPI(title="mloop console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    env = Environment(loader=PackageLoader("mloop.console", "templates"), autoescape=select_autoescape(["html"]))
    env.globals["split_bar"] = plots.svg_split_bar
    env.filters.update(when=fmt.when, secs=fmt.seconds, num=fmt.number)
    app.state.templates = env

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        started = time.perf_counter()
        response: Response = await call_next(request)
        # Server-side time of the page, service calls included (the bench reads it).
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
        response.headers.setdefault("Content-Security-Policy", _CSP)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers.setdefault("Cache-Control", "no-store")
        return response

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if request.method != "GET":
            return render(request, "error.html", 403, title="Not signed in", detail="Sign in first.")
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        return render(request, "error.html", 403, title="Forbidden", detail=str(exc))

    @app.exception_handler(AuthenticationError)
    async def token_refused(request: Request, exc: AuthenticationError) -> Response:
        response = RedirectResponse("/login?expired=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return render(request, "error.html", exc.status, title=str(exc.problem.get("title") or "Refused"),
                      detail=exc.detail or str(exc))

    @app.exception_handler(TransportError)
    async def unreachable(request: Request, exc: TransportError) -> Response:
        return render(request, "error.html", 502, title="A service does not answer", detail=str(exc))

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    from mloop.console import actions, pages, static

    app.include_router(static.router)
    app.include_router(pages.router)
    app.include_router(actions.router)
    return app
