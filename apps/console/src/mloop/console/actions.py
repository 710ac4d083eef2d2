"""Sign-in, sign-out and every action: form POSTs done with the signed-in person's token.

Each action checks the Origin and the session's CSRF token first (403
otherwise), then calls the service as the person. A refusal by the service
(wrong role, four-eyes, a state that does not allow it) is shown on the page
with the service's own reason and status code.
"""

from __future__ import annotations

import time
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from mloop.client._exceptions import ApiError, AuthenticationError, TransportError
from mloop.console.app import ConsoleSettings, Forbidden, form_of, render, session, user_api
from mloop.console.auth import SESSION_COOKIE, session_of

__all__ = ["router"]

router = APIRouter()

ROLLOUT_ACTIONS = ("pause", "resume", "abort", "promote-step")
_Id = Annotated[str, Path(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:-]+$")]


def _safe_next(value: str | None) -> str:
    """Only local paths: a sign-in link must not send the person to another site."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/models"


def _back(path: str, done: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?done={quote(done)}", status_code=303)


@router.get("/login", include_in_schema=False)
async def login_form(request: Request, next: str | None = None, expired: str | None = None) -> Response:
    error = "Your session ended or the token was refused; sign in again." if expired else None
    return render(request, "login.html", next=_safe_next(next), error=error)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    """Check the token with a service (a read every role may do), then set the session cookie."""
    form = await form_of(request, None)
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    who = session_of(token)
    if who is None:
        return render(request, "login.html", 400, next=target, error="That is not an mloop token (or it has expired).")
    try:
        await user_api(request, who).registry.page("/models", page_size=1)
    except AuthenticationError:
        return render(request, "login.html", 401, next=target, error="The services refused this token.")
    except (ApiError, TransportError) as exc:
        return render(request, "login.html", 502, next=target, error=f"Could not check the token: {exc}")
    settings: ConsoleSettings = request.app.state.settings
    response = RedirectResponse(target, status_code=303)
    max_age = int(who.expires_at - time.time()) if who.expires_at else 12 * 3600
    response.set_cookie(
        SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict",
        secure=settings.secure_cookie, path="/",
    )
    return response


@router.post("/logout", include_in_schema=False)
async def logout(request: Request) -> Response:
    who = session(request)
    await form_of(request, who)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def _refused(request: Request, exc: ApiError, page: str) -> Response:
    """Show the page the action came from again, with the service's reason, at the service's status."""
    from mloop.console import pages

    reason = exc.detail or str(exc.problem.get("title") or exc)
    return await pages.render_again(request, page, refused=reason, status_code=exc.status)


@router.post("/promotions/{request_id}/{decision}", include_in_schema=False)
async def review(request: Request, request_id: _Id, decision: str) -> Response:
    """Approve or reject a promotion request as the signed-in reviewer (four-eyes is the registry's)."""
    who = session(request)
    form = await form_of(request, who)
    if decision not in ("approve", "reject"):
        raise Forbidden(f"unknown decision {decision!r}")
    comment = form.get("comment", "").strip() or None
    api = user_api(request, who)
    try:
        if decision == "approve":
            await api.registry.approve(request_id, comment=comment)
        else:
            await api.registry.reject(request_id, comment=comment or "rejected in the console")
    except AuthenticationError:
        raise
    except ApiError as exc:
        return await _refused(request, exc, "/promotions")
    return _back("/promotions", "approved" if decision == "approve" else "rejected")


@router.post("/rollouts/{rollout_id}/{action}", include_in_schema=False)
async def rollout_action(request: Request, rollout_id: _Id, action: str) -> Response:
    """Pause, resume, abort or promote a step of a rollout, as the signed-in operator."""
    who = session(request)
    form = await form_of(request, who)
    if action not in ROLLOUT_ACTIONS:
        raise Forbidden(f"unknown rollout action {action!r}")
    page = f"/rollouts/{rollout_id}"
    try:
        await user_api(request, who).rollout.action(rollout_id, action, reason=form.get("reason", "").strip() or None)
    except AuthenticationError:
        raise
    except ApiError as exc:
        return await _refused(request, exc, page)
    return _back(page, action)


@router.post("/retrain/jobs/{job_id}/{action}", include_in_schema=False)
async def job_action(request: Request, job_id: _Id, action: str) -> Response:
    """Confirm or cancel a retrain job, as the signed-in person."""
    who = session(request)
    form = await form_of(request, who)
    api = user_api(request, who)
    try:
        if action == "confirm":
            await api.retrain.confirm(job_id)
        elif action == "cancel":
            await api.retrain.cancel(job_id, reason=form.get("reason", "").strip() or "cancelled in the console")
        else:
            raise Forbidden(f"unknown job action {action!r}")
    except AuthenticationError:
        raise
    except ApiError as exc:
        return await _refused(request, exc, "/retrain")
    return _back("/retrain", action)
