"""Services restarted side by side (one thread each) reap their exited children without tripping over each other."""

from __future__ import annotations

import threading
import time
from typing import Any

from mloop.devstack import services


class _Exited:
    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int:
        time.sleep(0.002)  # widen the window in which another thread reaps the same child
        return -9


def test_reaping_from_several_threads_at_once_collects_each_child_once(monkeypatch: Any) -> None:
    children = {pid: _Exited(pid) for pid in range(100_000, 100_040)}
    monkeypatch.setattr(services, "_CHILDREN", dict(children))
    monkeypatch.setattr(services, "_exit_codes", {})
    errors: list[BaseException] = []

    def reap() -> None:
        try:
            services._reap_children()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reap) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert services._CHILDREN == {}
    assert services._exit_codes == dict.fromkeys(children, -9)
