"""The HTTP seam shared by every service client: base URL, bearer token, errors, pagination."""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

import httpx

from mloop.client._exceptions import ApiError, TransportError, error_for_status

__all__ = ["JSON", "AsyncClosing", "ServiceClient"]

JSON = dict[str, Any]


def _clean(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if params is None:
        return None
    return {k: v for k, v in params.items() if v is not None}


class _RequestOptions(TypedDict, total=False):
    """What a request carries besides its method and path (see :meth:`ServiceClient.request`)."""

    json: Any
    params: Mapping[str, Any] | None
    idempotency_key: str | None


class AsyncClosing(abc.ABC):
    """``async with`` for a client holding connections: leaving the block calls :meth:`aclose`."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the client's connections."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class ServiceClient(AsyncClosing):
    """A thin async client of one service's HTTP API.

    ``token`` is a bearer token (``mloop token`` issues local ones).
    ``transport`` lets tests use ``httpx.ASGITransport(app)`` or
    ``httpx.MockTransport``; ``http`` shares one ``httpx.AsyncClient``
    between several service clients (the base URL is then given per request).
    Errors: :class:`~mloop.client.ApiError` subclasses for error responses,
    :class:`~mloop.client.TransportError` when the service cannot be reached.
    """

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._own = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout_s, transport=transport)

    async def aclose(self) -> None:
        if self._own:
            await self._http.aclose()

    def _headers(self, idempotency_key: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        """Send a request; return the decoded JSON body (None for an empty one).

        Writes (POST/PUT/PATCH) get an ``Idempotency-Key`` unless one is given, so a
        retried call returns the first result.
        """
        if method in ("POST", "PUT", "PATCH") and idempotency_key is None:
            idempotency_key = str(uuid.uuid4())
        resp = await self._send(method, path, json=json, params=params, idempotency_key=idempotency_key)
        if not resp.content:
            return None
        ctype = resp.headers.get("content-type", "")
        if "json" not in ctype:
            return resp.text
        return resp.json()

    async def _send(self, method: str, path: str, **options: Unpack[_RequestOptions]) -> httpx.Response:
        """The response of a successful request (``options`` as for :meth:`request`).

        Raises :class:`TransportError` when the service cannot be reached and
        the :class:`ApiError` subclass of the status for a 4xx/5xx answer,
        carrying its problem document.
        """
        url = self.base_url + path
        try:
            resp = await self._http.request(
                method, url, json=options.get("json"), params=_clean(options.get("params")),
                headers=self._headers(options.get("idempotency_key")),
            )
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {url}: {exc!r}") from exc
        if resp.status_code >= 400:
            try:
                body = resp.json()
                problem = body if isinstance(body, dict) else {"detail": body}
            except ValueError:
                problem = {"title": resp.reason_phrase, "detail": resp.text[:500]}
            problem.setdefault("status", resp.status_code)
            raise error_for_status(resp.status_code)(resp.status_code, problem, method=method, url=url)
        return resp

    async def get(self, path: str, **params: Any) -> Any:
        return await self.request("GET", path, params=params)

    async def text(self, path: str, **params: Any) -> str:
        """GET a non-JSON body (an HTML report, JSON Lines) as text."""
        return (await self._send("GET", path, params=params)).text

    async def download(self, path: str, **params: Any) -> bytes:
        """GET a binary body (an evidence archive)."""
        return (await self._send("GET", path, params=params)).content

    async def post(self, path: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        return await self.request("POST", path, json=body, idempotency_key=idempotency_key)

    async def put(self, path: str, body: Any = None) -> Any:
        return await self.request("PUT", path, json=body)

    async def delete(self, path: str) -> Any:
        return await self.request("DELETE", path)

    async def pages(self, path: str, *, limit: int | None = None, **params: Any) -> AsyncIterator[JSON]:
        """Iterate the items of a cursor-paginated list (``items`` + ``next_page_token``)."""
        token: str | None = None
        seen = 0
        while True:
            page = await self.get(path, **params, page_token=token)
            items = page.get("items", []) if isinstance(page, dict) else page
            for item in items:
                yield item
                seen += 1
                if limit is not None and seen >= limit:
                    return
            token = page.get("next_page_token") if isinstance(page, dict) else None
            if not token:
                return

    async def page(
        self, path: str, *, page_token: str | None = None, page_size: int | None = None, **params: Any
    ) -> tuple[list[JSON], str | None]:
        """One page of a cursor-paginated list: its items and the token of the next page (None at the end)."""
        body = await self.get(path, **params, page_token=page_token, page_size=page_size)
        if not isinstance(body, dict):
            return list(body), None
        token = body.get("next_page_token")
        return list(body.get("items", [])), str(token) if token else None

    async def list_all(self, path: str, *, limit: int | None = None, **params: Any) -> list[JSON]:
        return [item async for item in self.pages(path, limit=limit, **params)]

    async def ready(self) -> bool:
        """True when ``/readyz`` answers 200."""
        try:
            await self.get("/readyz")
        except (ApiError, TransportError):
            return False
        return True
