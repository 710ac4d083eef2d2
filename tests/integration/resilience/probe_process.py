"""The probe service as a process of its own, for kill -9 tests.

Run from the repository root: ``python -m tests.integration.resilience.probe_process``,
configured through the environment like any service (``KAFKA_BOOTSTRAP_SERVERS``,
``DATABASE_URL``, ``MLOOP_TOPIC_PREFIX``, ``MLOOP_HTTP_PORT``, ...).
"""

from __future__ import annotations

from mloop.runtime.service import serve
from tests.integration.runtime.probe import ProbeSettings, create_probe_app


def main() -> None:
    settings = ProbeSettings()
    serve(create_probe_app(settings), settings)


if __name__ == "__main__":
    main()
