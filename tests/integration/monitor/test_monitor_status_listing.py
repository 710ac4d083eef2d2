"""The monitor's status of many models in one call, against the real Kafka and Postgres.

It must answer, for each model, exactly what the per-model status answers
(traffic split, last windows, open incidents included), page by model name,
leave out names it has not seen, and refuse bad input with a problem naming
the field.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mloop.client import MonitorClient
from mloop.contracts.payloads import Route, TrafficSplitChanged
from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.testing import auth_headers, running_app

from .streams import SMALL_WINDOWS, Traffic, records, reference_profile, registration, wait_until

pytestmark = pytest.mark.integration


async def test_the_status_of_many_models_in_one_call_is_each_models_own_status(infra: Any) -> None:
    settings = MonitorSettings(**infra.settings_kwargs())
    rng = np.random.default_rng(3)
    viewer = auth_headers(settings, "vera", "viewer")
    operator = auth_headers(settings, "olga", "operator")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        # alpha: configured, two versions, a split, and a drift incident still open.
        r = await client.put("/models/alpha/config", json=SMALL_WINDOWS, headers=operator)
        assert r.status_code == 200, r.text
        for name, version in (("alpha", "1"), ("alpha", "2"), ("bravo", "1"), ("charlie", "4"), ("delta", "1")):
            await traffic.event("model-registered", registration(name, version, profile=reference_profile()))
        await traffic.event("traffic-split-changed", TrafficSplitChanged(
            model="alpha", seq=2, routes=[Route(version="1", weight=0.75), Route(version="2", weight=0.25)]))
        await traffic.predictions("alpha", records(rng, 500, version="1", start=0)
                                  + records(rng, 1000, version="1", start=500, shift=1.5))

        async def settled() -> bool:
            s = await client.get("/models/alpha/versions/1/status", headers=viewer)
            d = await client.get("/models/delta/status", headers=viewer)
            return (s.status_code == 200 and d.status_code == 200 and s.json()["windows_evaluated"] == 3
                    and bool(s.json()["open_incidents"]) and s.json()["traffic_weight"] == 0.75)
        await wait_until(settled, timeout_s=40, what="alpha drifted with an open incident, every model seen")

        one_by_one = {}
        for name in ("alpha", "bravo", "charlie", "delta"):
            answer = await client.get(f"/models/{name}/status", headers=viewer)
            assert answer.status_code == 200
            one_by_one[name] = answer.json()
        alpha = one_by_one["alpha"]
        assert alpha["configured"] and [v["version"] for v in alpha["versions"]] == ["1", "2"]
        assert alpha["versions"][0]["open_incidents"] and alpha["versions"][0]["last_windows"]["data"]["alarm"]
        assert alpha["versions"][1]["traffic_weight"] == 0.25 and not one_by_one["bravo"]["configured"]

        # Named models, two a page: the same documents, ordered by name; a name never seen is left out.
        first = await client.get("/status", params={"model": ["delta", "alpha", "nobody", "charlie"], "page_size": 2},
                                 headers=viewer)
        assert first.status_code == 200, first.text
        assert [m["model"] for m in first.json()["items"]] == ["alpha", "charlie"]
        token = first.json()["next_page_token"]
        assert token
        rest = await client.get("/status", params={"model": ["delta", "alpha", "nobody", "charlie"], "page_size": 2,
                                                   "page_token": token}, headers=viewer)
        assert rest.json()["next_page_token"] is None
        listed = first.json()["items"] + rest.json()["items"]
        assert listed == [one_by_one["alpha"], one_by_one["charlie"], one_by_one["delta"]]

        # Every model, through the SDK's typed client, one small page at a time.
        sdk = MonitorClient("http://testserver", viewer["Authorization"].removeprefix("Bearer "), http=client)
        assert await sdk.statuses(page_size=3) == [one_by_one[n] for n in ("alpha", "bravo", "charlie", "delta")]
        assert await sdk.statuses(["bravo", "nobody"]) == [one_by_one["bravo"]]
        assert await sdk.statuses([]) == []

        # A read like the others: a token is needed; bad input is a problem naming the field.
        assert (await client.get("/status")).status_code == 401
        for params, field in (
            ({"model": ["ok", "../etc"]}, "query.model"),
            ({"model": [f"m{i}" for i in range(201)]}, "query.model"),
            ({"page_token": "not-a-token"}, "query.page_token"),
            ({"page_size": 0}, "page_size"),
        ):
            answer = await client.get("/status", params=params, headers=viewer)
            assert answer.status_code in (400, 422), (params, answer.status_code)
            assert answer.headers["content-type"] == "application/problem+json"
            assert field in answer.text, (params, answer.text)
