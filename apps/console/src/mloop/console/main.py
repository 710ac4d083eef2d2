"""Composition root: settings from the environment, then uvicorn on ``MLOOP_HTTP_PORT`` (8100)."""

from __future__ import annotations

import logging
import os

import uvicorn

from mloop.console.app import ConsoleSettings, create_app


def main() -> None:
    """Serve the console until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = ConsoleSettings.from_env(os.environ)
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_config=None, access_log=False)
