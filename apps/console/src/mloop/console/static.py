"""The console's stylesheet and its one small script, served from the package (no third-party code)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

__all__ = ["router"]

router = APIRouter()

_ASSETS = files("mloop.console") / "assets"
CSS = (_ASSETS / "console.css").read_text(encoding="utf-8")
JS = (_ASSETS / "console.js").read_text(encoding="utf-8")


@router.get("/static/console.css", include_in_schema=False)
async def stylesheet() -> Response:
    return Response(CSS, media_type="text/css", headers={"Cache-Control": "max-age=300"})


@router.get("/static/console.js", include_in_schema=False)
async def script() -> Response:
    return Response(JS, media_type="text/javascript", headers={"Cache-Control": "max-age=300"})
