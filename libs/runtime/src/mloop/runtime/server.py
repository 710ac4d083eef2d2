"""The HTTP server a service runs in: uvicorn with a deadline on reading request headers.

uvicorn times out idle keep-alive connections but not a request whose headers
never finish arriving (or a connection that never sends anything): each such
connection holds a socket for as long as the client likes. The protocol here
closes a connection whose request head is not complete within
``http_header_timeout_s`` of its first byte (or of the connection opening),
answering ``408`` when a partial head was received.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mloop.runtime.settings import ServiceSettings

__all__ = ["HeaderTimeoutProtocol", "server_config"]


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for each request's head."""

    header_timeout_s: float = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._waiting_for_head():
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have been started (and its head read) just now.
        if not self._waiting_for_head():
            self._cancel_header_timer()

    def _waiting_for_head(self) -> bool:
        """True while part of a request head is buffered but the head is not complete."""
        pending, _closed = self.conn.trailing_data
        return self.conn.their_state is h11.IDLE and bool(pending)

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered: not ours to cut
        if self._waiting_for_head():
            body = b"the request head was not received in time"
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            self.transport.close()
        elif self.cycle is None:
            # Opened and never sent a byte; after a first response the keep-alive timer governs.
            self.transport.close()


def server_config(app: Any, settings: ServiceSettings, *, sock: socket.socket | None = None) -> uvicorn.Config:
    """The uvicorn configuration every service runs with (``serve`` and the socket-level tests).

    With ``sock``, the caller passes the same socket to ``uvicorn.Server.serve(sockets=[sock])``.
    """
    protocol = type("ServiceHttpProtocol", (HeaderTimeoutProtocol,),
                    {"header_timeout_s": settings.http_header_timeout_s})
    host, port = (sock.getsockname()[:2] if sock is not None else (settings.http_host, settings.http_port))
    return uvicorn.Config(
        app, host=host, port=port, http=protocol, log_config=None, lifespan="on", access_log=False,
        timeout_keep_alive=settings.http_keepalive_timeout_s,
    )
