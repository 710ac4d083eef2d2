"""The monitor against the real Kafka and Postgres: drift with hysteresis,
plain-JSON input, bad input, ground truth and the API."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest

from mloop.contracts.payloads import Route, TrafficSplitChanged
from mloop.monitor.main import create_app
from mloop.monitor.settings import MonitorSettings
from mloop.runtime.testing import EventCollector, auth_headers, running_app

from .streams import SMALL_WINDOWS, T0, Traffic, query, records, reference_profile, registration, wait_until

pytestmark = pytest.mark.integration

SIGNALS = ["drift-detected", "incident-resolved", "performance-degraded", "data-quality-violated", "dead-letter"]


def _settings(infra: Any, **kw: Any) -> MonitorSettings:
    return MonitorSettings(**infra.settings_kwargs(**kw))


async def _register(client: Any, traffic: Traffic, settings: MonitorSettings, model: str, version: str,
                    *, profile: bool = True, config: dict[str, Any] | None = None,
                    metrics: dict[str, float] | None = None) -> None:
    r = await client.put(f"/models/{model}/config", json=config or SMALL_WINDOWS,
                         headers=auth_headers(settings, "olga", "operator"))
    assert r.status_code == 200, r.text
    await traffic.event("model-registered", registration(model, version, profile=reference_profile() if profile
                                                          else None, metrics=metrics))

    async def registered() -> bool:
        s = await client.get(f"/models/{model}/versions/{version}/status", headers=auth_headers(settings, "v"))
        return bool(s.status_code == 200 and s.json()["registered"])
    await wait_until(registered, what=f"{model}/{version} registered")


async def test_a_drifted_stream_emits_one_drift_detected_with_evidence_and_recovery_resolves_it(infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(1)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, SIGNALS) as seen:
        await _register(client, traffic, settings, "credit", "3")
        stream = (records(rng, 1000, version="3", start=0)
                  + records(rng, 1500, version="3", start=1000, shift=1.0)
                  + records(rng, 1500, version="3", start=2500))
        await traffic.predictions("credit", stream, per_message=100)

        resolved = await seen.wait_for("incident-resolved", 1, timeout_s=40)
        await seen.poll(1.0)
        drift = [e for e in seen.of("drift-detected") if e.data.kind == "data"]
        assert len(drift) == 1, [e.data for e in drift]
        d = drift[0].data
        assert (d.model, d.version, d.kind) == ("credit", "3", "data")
        assert d.severity in ("medium", "high")
        assert d.window.size == 500 and d.window.start < d.window.end
        assert d.reference is not None and d.reference.kind == "training-profile" and d.reference.size == 5000
        by_name = {f.name: f for f in d.features}
        assert set(by_name) == {"age", "income", "score", "tenure", "region"}
        assert by_name["income"].drifted and by_name["income"].p_value is not None
        assert by_name["income"].p_value <= by_name["income"].threshold
        assert by_name["income"].effect_size is not None and by_name["income"].effect_size > 0.02
        assert not by_name["age"].drifted
        assert d.correction == "benjamini-hochberg"
        assert resolved[0].data.incident_id == d.incident_id
        assert resolved[0].data.signal == "drift-detected"
        assert drift[0].source == "/mloop/monitor"

        history = await client.get("/models/credit/drift", params={"kind": "data", "page_size": 3}, headers=viewer)
        assert history.status_code == 200
        page = history.json()
        assert len(page["items"]) == 3 and page["next_page_token"]
        rest = await client.get("/models/credit/drift", params={"kind": "data", "page_token": page["next_page_token"],
                                                                 "page_size": 100}, headers=viewer)
        windows = page["items"] + rest.json()["items"]
        assert [w["window_no"] for w in windows] == list(range(8, 0, -1))
        assert [w["drifted"] for w in reversed(windows)] == [False, False, True, True, True, False, False, False]
        assert all(len(w["features"]) == 5 for w in windows)

        status = (await client.get("/models/credit/status", headers=viewer)).json()
        v3 = status["versions"][0]
        assert v3["predictions_seen"] == 4000 and v3["windows_evaluated"] == 8
        assert v3["open_incidents"] == [] and v3["reference_source"] == "training-profile"

        incidents = (await client.get("/models/credit/incidents", headers=viewer)).json()
        assert [(i["id"], i["signal"], i["opened_window"]) for i in incidents] == [(d.incident_id, "data", 3)]
        assert incidents[0]["resolved_at"] is not None

        report = await client.get("/models/credit/drift-report", headers=viewer)
        assert report.status_code == 200
        assert report.json()["history"]["income"][2]["drifted"] is True
        page_html = await client.get("/models/credit/drift-report.html", headers=viewer)
        assert page_html.status_code == 200 and page_html.headers["content-type"].startswith("text/html")
        assert "<svg" in page_html.text and "<script" not in page_html.text and "http-equiv" not in page_html.text
        assert "stylesheet" not in page_html.text


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")

async def test_plain_json_predictions_without_cloudevents_headers_are_monitored_and_stored(infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(2)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await _register(client, traffic, settings, "churn", "1", profile=False)
        operator = auth_headers(settings, "olga", "operator")
        bad = await client.put("/models/churn/config", headers=operator,
                               json={"window": {"mode": "sliding", "size": 1000, "slide": 300}})
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        assert bad.json()["errors"][0]["field"].startswith("body")
        for lateness in (-1, 31 * 86400, "soon"):
            bad = await client.put("/models/churn/config", headers=operator,
                                   json={"window": {"by": "time", "allowed_lateness": lateness}})
            assert bad.status_code == 422 and "allowed_lateness" in bad.json()["errors"][0]["field"]
        assert (await client.put("/models/churn/config", json={}, headers=viewer)).status_code == 403
        current = (await client.get("/models/churn/config", headers=viewer)).json()
        assert current["configured"] and current["config"]["window"]["size"] == 500
        await traffic.predictions("churn", records(rng, 1200, version="1", start=0, prefix="c"), per_message=1)

        async def counted() -> bool:
            s = await client.get("/models/churn/versions/1/status", headers=viewer)
            return bool(s.json()["predictions_seen"] == 1200)
        await wait_until(counted, timeout_s=40, what="1200 predictions counted")
        await traffic.event("traffic-split-changed", TrafficSplitChanged(
            model="churn", seq=3, routes=[Route(version="1", weight=0.9), Route(version="2", weight=0.1)]))

        async def routed() -> bool:
            s = await client.get("/models/churn/versions/1/status", headers=viewer)
            return bool(s.json()["traffic_weight"] == 0.9)
        await wait_until(routed, what="traffic split applied")
        status = (await client.get("/models/churn/versions/1/status", headers=viewer)).json()
        assert status["reference_source"] == "first-predictions" and status["reference_rows"] == 500
        assert status["windows_evaluated"] == 1
        one = await client.get("/predictions/c-0000042", headers=viewer)
        assert one.status_code == 200
        assert one.json()[0]["version"] == "1" and "income" in one.json()[0]["features"]
        ranged = await client.get("/models/churn/predictions", headers=viewer, params={
            "start": _iso(T0), "end": _iso(T0 + timedelta(seconds=10)), "page_size": 4})
        assert [p["request_id"] for p in ranged.json()["items"]] == [f"c-{i:07d}" for i in range(4)]
        nxt = await client.get("/models/churn/predictions", headers=viewer, params={
            "start": _iso(T0), "end": _iso(T0 + timedelta(seconds=10)),
            "page_token": ranged.json()["next_page_token"]})
        assert [p["request_id"] for p in nxt.json()["items"]] == [f"c-{i:07d}" for i in range(4, 10)]
        assert (await client.get("/predictions/nope", headers=viewer)).status_code == 404


async def test_bad_input_is_dead_lettered_or_counted_as_quality_violations_and_the_consumer_carries_on(
        infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(3)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, SIGNALS) as seen:
        await _register(client, traffic, settings, "fraud", "1")
        ts = _iso(T0)
        await traffic.raw("prediction-logged", b"\x00\xffthis is not json", key=b"fraud")
        await traffic.raw("prediction-logged", json.dumps({"model": "fraud", "records": [
            {"request_id": "nv-1", "timestamp": ts, "features": {"age": 1}}]}).encode(), key=b"fraud")
        await traffic.raw("prediction-logged", json.dumps({"model": "fraud", "records": [
            {"request_id": "wt-1", "version": "1", "timestamp": ts, "features": {"age": [1, 2]}}]}).encode())
        await traffic.raw("prediction-logged", json.dumps({"model": "nobody-knows", "records": [
            {"request_id": "u-1", "version": "1", "timestamp": ts, "features": {"age": 1}}]}).encode(),
            key=b"nobody-knows")
        huge = {"model": "fraud", "records": [{"request_id": f"h{i}", "version": "1", "timestamp": ts}
                                              for i in range(100_000)]}
        await traffic.raw("prediction-logged", json.dumps(huge, separators=(",", ":")).encode(), key=b"fraud")

        # Then a window of traffic with NaN/inf and text where numbers belong.
        recs = records(rng, 500, version="1", start=0, prefix="q")
        for i, r in enumerate(recs):
            if i % 10 == 0:
                r["features"]["income"] = "a lot"
            if i % 10 == 1:
                r["features"]["age"] = float("nan")
            if i % 10 == 2:
                r["features"]["score"] = float("inf")
            if i % 10 == 3:
                r["features"]["colour"] = "blue"
        await traffic.predictions("fraud", recs, per_message=50)

        expected = ["not valid JSON", "records.0.version: Field required", "records.0.features.age",
                    "unknown model 'nobody-knows'", "at most 20000 records"]
        for reason in expected:
            # A dead letter may repeat after a rebalance (it is published before the offsets are stored).
            await seen.wait_for("dead-letter", 1, timeout_s=40, where=lambda e, r=reason: r in e.data.reason)
        quality = await seen.wait_for("data-quality-violated", 1, timeout_s=40)
        assert all(e.data.topic == "prediction-logged" for e in seen.of("dead-letter"))
        kinds = {(v.kind, v.feature) for v in quality[0].data.violations}
        assert ("type-error", "income") in kinds
        assert ("invalid-value", "age") in kinds and ("invalid-value", "score") in kinds
        assert ("schema-mismatch", "colour") in kinds
        status = (await client.get("/models/fraud/versions/1/status", headers=viewer)).json()
        assert status["predictions_seen"] == 500
        assert status["last_windows"]["quality"]["alarm"] is True


async def test_ground_truth_joins_by_request_id_including_early_labels_and_performance_degraded_fires(
        infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(4)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, SIGNALS) as seen:
        await _register(client, traffic, settings, "credit", "7", metrics={"accuracy": 0.95, "auc": 0.97})
        recs = records(rng, 600, version="7", start=0, prefix="g")
        truth = [(r["request_id"], int(r["prediction"] >= 0.5)) for r in recs]
        # Labels for the first 50 arrive before their predictions.
        await traffic.labels("credit", truth[:50])

        async def early_pending() -> bool:
            rows = await query(infra.database_url, "SELECT count(*) AS n FROM monitor.pending_labels")
            return bool(rows[0]["n"] == 50)
        await wait_until(early_pending, what="50 early labels pending")
        await traffic.predictions("credit", recs, per_message=100)

        async def stored() -> bool:
            rows = await query(infra.database_url, "SELECT count(*) AS n FROM monitor.predictions")
            return bool(rows[0]["n"] == 600)
        await wait_until(stored, what="600 predictions stored")
        # Correct labels for the next 150, then flipped labels: accuracy collapses.
        await traffic.labels("credit", truth[50:200])
        flipped = [(rid, 1 - y if i % 2 == 0 else y) for i, (rid, y) in enumerate(truth[200:])]
        await traffic.labels("credit", flipped)
        # A label for an unknown request waits; one far past the horizon is refused.
        await traffic.labels("credit", [("never-predicted", 1)])

        degraded = await seen.wait_for("performance-degraded", 1, timeout_s=40)
        d = degraded[0].data
        assert (d.model, d.version) == ("credit", "7")
        assert d.metric in ("accuracy", "auc") and d.baseline in (0.95, 0.97)
        assert d.value < d.threshold < d.baseline and d.detector == "threshold"
        assert d.window.size == 100

        async def all_joined() -> bool:
            s = await client.get("/models/credit/versions/7/status", headers=viewer)
            return bool(s.json()["labels_joined"] == 600)
        await wait_until(all_joined, what="600 labels joined")
        one = (await client.get("/predictions/g-0000001", params={"model": "credit"}, headers=viewer)).json()[0]
        assert one["label"] == truth[1][1] and one["labeled_at"] is not None
        windows = await query(infra.database_url, "SELECT alarm FROM monitor.window_results "
                              "WHERE signal = 'performance' ORDER BY window_no")
        assert [w["alarm"] for w in windows][:2] == [False, False] and windows[-1]["alarm"] is True
        assert len(seen.of("performance-degraded")) == 1


async def test_an_early_label_is_joined_once_even_when_its_request_has_a_shadow_copy_in_the_same_batch(
        infra: Any) -> None:
    """Labels that wait for their predictions are joined once, like labels that come after them.

    With a shadow, a request is logged twice (served and shadow version); the
    store keeps the first. A label that waited must not be joined to both copies
    (it was, when a monitor catching up after a restart read labels first).
    """
    settings = _settings(infra)
    rng = np.random.default_rng(6)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await _register(client, traffic, settings, "credit", "7")
        await _register(client, traffic, settings, "credit", "8")
        served = records(rng, 40, version="7", start=0, prefix="w")
        shadow = [{**r, "version": "8"} for r in served]
        await traffic.labels("credit", [(r["request_id"], 1) for r in served])

        async def pending() -> bool:
            rows = await query(infra.database_url, "SELECT count(*) AS n FROM monitor.pending_labels")
            return bool(rows[0]["n"] == 40)
        await wait_until(pending, what="40 early labels pending")
        # Served and shadow copies of each request in one message: one batch.
        await traffic.predictions("credit", [x for pair in zip(served, shadow, strict=True) for x in pair],
                                  per_message=80)

        async def counted() -> bool:
            s = (await client.get("/models/credit/status", headers=viewer)).json()
            return bool(sum(v["predictions_seen"] for v in s["versions"]) == 80)
        await wait_until(counted, what="80 prediction records counted")
        status = (await client.get("/models/credit/status", headers=viewer)).json()
        joined = {v["version"]: v["labels_joined"] for v in status["versions"]}
        rows = await query(infra.database_url, "SELECT version, count(*) AS n FROM monitor.predictions "
                           "WHERE label IS NOT NULL GROUP BY version")
        assert {r["version"]: r["n"] for r in rows} == {"7": 40}
        assert joined == {"7": 40, "8": 0}, joined
        assert (await query(infra.database_url, "SELECT count(*) AS n FROM monitor.pending_labels"))[0]["n"] == 0


async def test_a_batch_that_fails_half_way_is_retried_without_counting_anything_twice(
        infra: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from mloop.monitor import store

    settings = _settings(infra)
    rng = np.random.default_rng(5)
    viewer = auth_headers(settings, "vera", "viewer")
    real = store.copy_predictions
    failures = {"left": 2}

    async def flaky(conn: Any, rows: Any) -> Any:
        # Fails after the windows were updated in memory, before anything is written.
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the database hiccuped")
        return await real(conn, rows)

    monkeypatch.setattr(store, "copy_predictions", flaky)
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await _register(client, traffic, settings, "retry", "1")
        await traffic.predictions("retry", records(rng, 1000, version="1", start=0, prefix="f"), per_message=100)

        async def counted() -> bool:
            s = await client.get("/models/retry/versions/1/status", headers=viewer)
            return bool(s.json()["predictions_seen"] >= 1000)
        await wait_until(counted, timeout_s=40, what="1000 predictions counted")
        await asyncio.sleep(0.5)
        status = (await client.get("/models/retry/versions/1/status", headers=viewer)).json()
        assert failures["left"] == 0
        assert status["predictions_seen"] == 1000 and status["windows_evaluated"] == 2
        rows = await query(infra.database_url, "SELECT count(*) AS n FROM monitor.predictions")
        assert rows[0]["n"] == 1000


async def test_an_unregistered_model_can_be_monitored_against_its_first_predictions_with_a_minimal_store(
        infra: Any) -> None:
    settings = _settings(infra, unknown_models="monitor", prediction_store="minimal")
    rng = np.random.default_rng(6)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        r = await client.put("/models/stranger/config", json=SMALL_WINDOWS,
                             headers=auth_headers(settings, "olga", "operator"))
        assert r.status_code == 200
        recs = records(rng, 1000, version="9", start=0, prefix="s")
        await traffic.predictions("stranger", recs, per_message=100)

        # Early labels are covered by the ground-truth test; here the predictions land first.
        async def predicted() -> bool:
            s = await client.get("/models/stranger/versions/9/status", headers=viewer)
            return s.status_code == 200 and bool(s.json()["predictions_seen"] == 1000)
        await wait_until(predicted, timeout_s=40, what="predictions seen")
        await traffic.labels("stranger", [(r["request_id"], 1) for r in recs[:10]])

        async def labelled() -> bool:
            s = await client.get("/models/stranger/versions/9/status", headers=viewer)
            return s.status_code == 200 and bool(s.json()["labels_joined"] == 10)
        await wait_until(labelled, timeout_s=40, what="labels joined")
        status = (await client.get("/models/stranger/versions/9/status", headers=viewer)).json()
        assert status["registered"] is False and status["reference_source"] == "first-predictions"
        assert status["predictions_seen"] == 1000 and status["windows_evaluated"] == 1
        stored = (await client.get("/predictions/s-0000003", headers=viewer)).json()[0]
        assert stored["features"] is None and stored["label"] == 1 and stored["prediction"] == recs[3]["prediction"]


async def test_a_rise_in_missing_values_sent_as_null_or_left_out_is_drift_of_its_own_kind(infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(21)
    viewer = auth_headers(settings, "vera", "viewer")
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic, \
            EventCollector(infra.bootstrap_servers, infra.topic_prefix, SIGNALS) as seen:
        await _register(client, traffic, settings, "churn", "1")
        clean = records(rng, 1000, version="1", start=0)
        broken = records(rng, 500, version="1", start=1000)
        # 8 % of rows lose income: half of them as JSON null, half with the key left out.
        # Far below the quality check's 10-point tolerance, so only the drift test can see it.
        holes = np.flatnonzero(rng.random(len(broken)) < 0.08)
        for k, i in enumerate(holes):
            if k % 2:
                broken[i]["features"]["income"] = None
            else:
                del broken[i]["features"]["income"]
        await traffic.predictions("churn", clean + broken, per_message=100)

        await seen.wait_for("drift-detected", 1, timeout_s=40)
        await seen.poll(1.0)
        drift = [e.data for e in seen.of("drift-detected") if e.data.kind == "data"]
        assert len(drift) == 1
        d = drift[0]
        assert d.window.size == 500 and d.window.start == T0 + timedelta(seconds=1000)  # rows 1000-1499
        missing = [f for f in d.features if f.kind == "missing"]
        assert [(f.name, f.drifted) for f in missing] == [("income", True)]
        assert missing[0].method == "fisher" and missing[0].effect_size == pytest.approx(len(holes) / 500)
        assert not any(f.drifted for f in d.features if f.kind == "distribution")
        assert d.severity == "medium"
        # The left-out keys are also a schema problem; the missing share alone is not a quality violation.
        kinds = {(v.kind, v.feature) for e in seen.of("data-quality-violated") for v in e.data.violations}
        assert kinds <= {("schema-mismatch", "income")}

        report = (await client.get("/models/churn/drift-report", headers=viewer)).json()
        latest = report["latest"]["data"]
        assert [(f["name"], f["kind"], f["drifted"]) for f in latest["missing"]] == [("income", "missing", True)]
        assert report["history"]["income (missing)"][-1]["drifted"] is True
        page = (await client.get("/models/churn/drift-report.html", headers=viewer)).text
        assert "Missing share (null or absent)" in page and "income missing share" in page


async def test_a_prediction_read_after_its_time_window_closed_is_counted_late_and_shown(infra: Any) -> None:
    settings = _settings(infra)
    rng = np.random.default_rng(8)
    viewer = auth_headers(settings, "vera", "viewer")
    config = {"window": {"by": "time", "seconds": 600, "min_rows": 100, "allowed_lateness": 30}}
    async with running_app(create_app(settings)) as client, \
            Traffic(infra.bootstrap_servers, infra.topic_prefix) as traffic:
        await _register(client, traffic, settings, "tardy", "1", config=config)
        # 0..699 s: the first window closes once 630 s is read (its end plus the lateness).
        await traffic.predictions("tardy", records(rng, 700, version="1", start=0, prefix="t"))
        # Three records of the closed window, read afterwards, then the next window's rest.
        await traffic.predictions("tardy", records(rng, 3, version="1", start=100, prefix="late"))
        await traffic.predictions("tardy", records(rng, 600, version="1", start=700, prefix="t"))

        async def counted() -> bool:
            s = await client.get("/models/tardy/versions/1/status", headers=viewer)
            return bool(s.json()["predictions_seen"] == 1303)
        await wait_until(counted, timeout_s=40, what="1303 predictions counted")
        status = (await client.get("/models/tardy/versions/1/status", headers=viewer)).json()
        assert status["late_rows"] == 3 and status["windows_evaluated"] == 2
        rows = await query(infra.database_url, f"""SELECT window_no, size, evidence->>'late_rows' AS late
            FROM {settings.schema_name}.window_results WHERE model = 'tardy' AND signal = 'quality'
            ORDER BY window_no""")
        # Never a window of their own: the two windows hold the 1,300 records on time.
        assert [(r["window_no"], r["size"], r["late"]) for r in rows] == [(1, 600, "0"), (2, 600, "3")]
