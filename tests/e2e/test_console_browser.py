"""The web console in a real headless Chromium against a real platform.

Kafka, Postgres, the five services and the console run as real processes on
free ports (the demo's private platform). The data is set up through the
governed path (register -> request promotion -> approval by another person);
the browser then signs in as each person and does what they would do.
Screenshots of the main pages go to reports/screenshots/.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from mloop.client import MloopClient
from mloop.demo.sandbox import Platform, private_platform
from mloop.devstack import StackPaths, find_free_ports, repo_root, start_services
from mloop.devstack._paths import read_pid
from mloop.devstack.services import stop_services
from mloop.runtime.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MODEL = "credit-console"
SHOTS = repo_root() / "reports" / "screenshots"
LINEAGE: dict[str, Any] = {
    "code": {"repo": "https://git.example.com/acme/credit", "commit": "9fceb02d0ae598e95dc970b74767f19372d61af8"},
    "dataset": {"uri": "s3://data/credit/2026-11-20.parquet", "version": "2026-11-20", "sha256": "ab" * 32},
    "features": {"version": "7", "schema": [{"name": "age", "type": "number"}, {"name": "income", "type": "number"}]},
    "environment": {"lock_hash": "b1946ac9"},
    "params": {"C": 1.0},
}


@dataclass
class World:
    platform: Platform
    console: str
    browser: Browser
    tokens: dict[str, str]
    pending: str  # the promotion request of v2, requested by dora (data-scientist and reviewer)
    other_pending: str  # v3, left pending for the viewer's page


def _chromium() -> str:
    path = os.environ.get("MLOOP_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("Chromium is not installed: `make browser` installs it from the distribution's packages")
    return path


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


DRIFTED = "credit-drifted"


async def _seen_by_monitor(api: MloopClient) -> bool:
    return bool(await api.monitor.statuses([DRIFTED]))


async def _drifted_traffic(platform: Platform, scientist: MloopClient, operator: MloopClient) -> None:
    """Predictions of a model of its own whose income shifts after the first windows (the monitor's input)."""
    import random

    from mloop.client import PredictionLogger

    # The monitor takes predictions of registered versions only.
    await scientist.registry.create_model(DRIFTED, description="drifts")
    await scientist.registry.register_version(DRIFTED, artifact_uri="s3://models/drifted/1", lineage=LINEAGE,
                                              metrics={"auc": 0.8})
    deadline = time.monotonic() + 60
    while not await _seen_by_monitor(operator):
        assert time.monotonic() < deadline, "the monitor never saw the drifted model's version"
        await asyncio.sleep(0.3)

    await operator.monitor.set_config(DRIFTED, {
        "window": {"mode": "tumbling", "by": "count", "size": 500}, "reference_size": 500,
        "resolve_after_windows": 2,
    })
    rng = random.Random(5)
    async with PredictionLogger(platform.stack.bootstrap_servers, DRIFTED,
                                topic_prefix=platform.stack.topic_prefix) as logger:
        for i in range(2000):
            shift = 15_000.0 if i >= 1000 else 0.0
            await logger.log(f"d-{i}", version="1", prediction=rng.random(),
                             features={"age": rng.gauss(40, 10), "income": rng.gauss(50_000, 12_000) + shift})


async def _governed_setup(platform: Platform, tokens: dict[str, str]) -> tuple[str, str]:
    """v1 champion through an approved promotion; v2 and v3 requested, waiting for review."""
    ep = platform.stack.endpoints
    async with MloopClient(ep, tokens["dana"]) as dana:
        rita = dana.with_token(tokens["rita"])
        dora = dana.with_token(tokens["dora"])
        omar = dana.with_token(tokens["omar"])
        await dana.registry.create_model(MODEL, description="Probability of default", tags={"team": "risk"})
        # Long shadow and steps: the rollout stays live while the browser pauses and resumes it.
        await omar.rollout.set_plan(MODEL, {
            "strategy": "canary", "shadow_duration_s": 1800, "steps": [0.1, 0.5], "step_min_duration_s": 1800,
            "step_min_samples": 10, "analysis_interval_s": 2, "failure_threshold": 2,
            "progress_deadline_s": 3600, "inconclusive_timeout_s": 3600,
        })
        versions = []
        for auc in (0.80, 0.81, 0.82):
            reg = await dana.registry.register_version(
                MODEL, artifact_uri=f"s3://models/{MODEL}/{auc}", lineage=LINEAGE, metrics={"auc": auc}
            )
            assert reg["validation"]["passed"], reg["validation"]
            versions.append(reg["version"])
            if len(versions) == 1:
                first = await dana.registry.request_promotion(MODEL, versions[0], reason="first production model")
                await rita.registry.approve(first["id"], comment="lineage checked")
                deadline = time.monotonic() + 90
                while await dana.registry.champion(MODEL) != versions[0]:
                    assert time.monotonic() < deadline, "v1 never became champion"
                    await asyncio.sleep(0.3)
        await _drifted_traffic(platform, dana, omar)
        v2 = await dora.registry.request_promotion(MODEL, versions[1], reason="weekly retrain")
        v3 = await dana.registry.request_promotion(MODEL, versions[2], reason="experiment")
        return str(v2["id"]), str(v3["id"])


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    chromium = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with private_platform() as platform:
        secret = platform.stack.jwt_secret
        tokens = {
            "dana": issue_token(secret, "dana", ["data-scientist"]),
            "dora": issue_token(secret, "dora", ["data-scientist", "reviewer"]),
            "rita": issue_token(secret, "rita", ["reviewer"]),
            "omar": issue_token(secret, "omar", ["operator"]),
            "vera": issue_token(secret, "vera", ["viewer"]),
            "ada": issue_token(secret, "ada", ["admin"]),
        }
        pending, other = asyncio.run(_governed_setup(platform, tokens))
        console = next(s for s in platform.services if s.name == "console")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            try:
                yield World(platform, console.url, browser, tokens, pending, other)
            finally:
                browser.close()


def _api(world: World, who: str = "dana") -> MloopClient:
    return MloopClient(world.platform.stack.endpoints, world.tokens[who])


def _call(world: World, fn: Callable[[MloopClient], Any], who: str = "dana") -> Any:
    """One API call as ``who``, on a thread of its own (Playwright's sync API owns this thread's event loop)."""

    async def go() -> Any:
        async with _api(world, who) as api:
            return await fn(api)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, go()).result()


def _sign_in(world: World, who: str, *, width: int = 1280, height: int = 900) -> tuple[BrowserContext, Page]:
    context = world.browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(world.console + "/models")
    expect(page).to_have_url(re.compile(r"/login"))
    page.get_by_label("Token").fill(world.tokens[who])
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Models")).to_be_visible()
    return context, page


def _shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _rollout_of(world: World, version: str) -> dict[str, Any] | None:
    rollouts = _call(world, lambda api: api.rollout.list_rollouts(model=MODEL))
    return next((r for r in rollouts if r["candidate"] == version), None)


# --------------------------------------------------------------------------- sign-in


def test_sign_in_refuses_a_bad_token_and_sets_a_strict_http_only_cookie(world: World) -> None:
    context = world.browser.new_context()
    page = context.new_page()
    page.goto(world.console + "/login")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not an mloop token")
    # A well-formed token signed with another key: the services refuse it, so the console does.
    page.get_by_label("Token").fill(issue_token("some-other-secret-that-is-long-enough-0123456789", "eve", ["admin"]))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("refused")
    assert context.cookies() == []
    context.close()

    context, page = _sign_in(world, "dana")
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # development stack over http; Secure everywhere else (unit-tested)
    row = page.get_by_role("row").filter(has_text=MODEL)
    expect(row).to_contain_text("v1")  # the champion
    _shot(page, "models")
    context.close()


def test_the_console_process_holds_no_signing_secret(world: World) -> None:
    pid = read_pid(world.platform.paths.service_pid("console"))
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    keys = {e.split(b"=", 1)[0] for e in environ}
    assert b"MLOOP_REGISTRY_URL" in keys
    assert b"MLOOP_JWT_SECRET" not in keys and b"DATABASE_URL" not in keys


# --------------------------------------------------------------------------- four eyes


def test_the_requester_cannot_approve_their_own_promotion_and_the_page_says_why(world: World) -> None:
    context, page = _sign_in(world, "dora")
    page.goto(world.console + "/promotions")
    card = page.get_by_role("region", name=f"Promotion of {MODEL} v2")
    expect(card).to_contain_text("You requested this promotion")
    with page.expect_response(lambda r: r.request.method == "POST" and "/approve" in r.url) as answer:
        card.get_by_role("button", name=f"Approve {MODEL} v2").click()
    assert answer.value.status in (403, 409)
    expect(page.locator("#refused")).to_contain_text("Refused")
    _shot(page, "promotions-refused")
    context.close()
    pr = _call(world, lambda api: api.registry.get_promotion_request(world.pending))
    assert pr["status"] == "pending" and pr["approved_by"] == []


def test_a_reviewer_approves_and_the_rollout_starts(world: World) -> None:
    context, page = _sign_in(world, "rita")
    page.goto(world.console + "/promotions")
    _shot(page, "promotions")
    card = page.get_by_role("region", name=f"Promotion of {MODEL} v2")
    card.get_by_label(f"Comment on {MODEL} v2").fill("gates and lineage checked")
    card.get_by_role("button", name=f"Approve {MODEL} v2").click()
    expect(page.get_by_role("status")).to_contain_text("Approved")
    pr = _call(world, lambda api: api.registry.get_promotion_request(world.pending))
    assert pr["status"] == "approved" and pr["approved_by"] == ["user:rita"]

    _wait(lambda: _rollout_of(world, "2") is not None, "the rollout of v2")
    page.goto(world.console + "/rollouts")
    page.get_by_role("table", name="Running rollouts").get_by_role("link", name="v2").click()
    expect(page.get_by_role("heading", name=re.compile(f"Rollout of {MODEL} v2"))).to_be_visible()
    expect(page.locator("#phase")).to_have_text(re.compile("initialized|shadowing"))
    # A reviewer is no operator: no rollout buttons.
    expect(page.get_by_role("button", name="Pause rollout")).to_have_count(0)
    context.close()


def test_an_operator_pauses_and_resumes_the_live_rollout(world: World) -> None:
    _wait(lambda: (_rollout_of(world, "2") or {}).get("phase") == "shadowing", "the rollout to shadow")
    rollout = _rollout_of(world, "2")
    assert rollout is not None
    context, page = _sign_in(world, "omar")
    page.goto(f"{world.console}/rollouts/{rollout['id']}")
    page.get_by_role("button", name="Pause rollout").click()
    expect(page.get_by_role("status")).to_contain_text("Paused")
    expect(page.locator("#phase")).to_have_text("paused")
    assert _rollout_of(world, "2")["phase"] == "paused"  # type: ignore[index]
    _shot(page, "rollout-paused")

    page.get_by_role("button", name="Resume rollout").click()
    expect(page.get_by_role("status")).to_contain_text("Resumed")
    expect(page.locator("#phase")).to_have_text("shadowing")
    assert _rollout_of(world, "2")["phase"] == "shadowing"  # type: ignore[index]
    # The live part refreshes itself: a new analysis appears without a reload.
    first = page.get_by_role("table", name="Analyses").get_by_role("row").nth(1).inner_text()
    _wait(lambda: page.get_by_role("table", name="Analyses").get_by_role("row").nth(1).inner_text() != first,
          "the page to refresh a new analysis", timeout_s=30)
    events = _call(world, lambda api: api.rollout.get_rollout(rollout["id"]))["history"]
    actors = {(h["kind"], h["actor"]) for h in events}
    assert ("rollout-paused", "user:omar") in actors and ("rollout-resumed", "user:omar") in actors
    _shot(page, "rollout")
    context.close()


# --------------------------------------------------------------------------- audit


def test_the_audit_pages_show_the_lifecycle_and_a_verified_ledger(world: World) -> None:
    context, page = _sign_in(world, "vera")
    page.goto(world.console + "/audit")
    page.get_by_label("Lifecycle model").fill(MODEL)
    page.get_by_label("Lifecycle version").fill("2")
    page.get_by_role("button", name="Show lifecycle").click()
    timeline = page.get_by_role("list", name="Lifecycle")
    for stage in ("registered", "validated", "promotion-requested", "approved"):
        expect(timeline).to_contain_text(stage)
    expect(timeline).to_contain_text("approved by user:rita")
    _shot(page, "audit-lifecycle")

    page.goto(world.console + f"/audit?model={MODEL}&actor=user:omar")
    expect(page.get_by_role("table", name="Ledger records")).to_contain_text("rollout-paused")

    page.goto(world.console + "/audit/verify")
    expect(page.get_by_role("heading", name="Ledger verification verified")).to_be_visible()
    _shot(page, "audit-verify")

    page.goto(world.console + f"/audit/serving?model={MODEL}")
    expect(page.locator("main")).to_contain_text("v1")
    with page.expect_download() as download:
        page.goto(world.console + "/audit")
        page.get_by_label("Evidence model").fill(MODEL)
        page.get_by_role("button", name="Download evidence bundle").click()
    path = download.value.path()
    assert path is not None and Path(path).read_bytes()[:2] == b"\x1f\x8b"  # a gzip archive
    context.close()


# --------------------------------------------------------------------------- viewer, forged posts


def test_a_viewer_sees_no_action_buttons_and_forged_posts_are_refused(world: World) -> None:
    rollout = _rollout_of(world, "2")
    assert rollout is not None
    context, page = _sign_in(world, "vera", width=390, height=844)  # a phone
    _shot(page, "models-phone")
    page.goto(world.console + "/promotions")
    expect(page.get_by_role("region", name=f"Promotion of {MODEL} v3")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("^(Approve|Reject) "))).to_have_count(0)
    page.goto(f"{world.console}/rollouts/{rollout['id']}")
    expect(page.get_by_role("heading", name=re.compile("Rollout of"))).to_be_visible()
    for action in ("Pause", "Resume", "Abort", "Promote step"):
        expect(page.get_by_role("button", name=f"{action} rollout")).to_have_count(0)
    page.goto(world.console + "/retrain")
    expect(page.get_by_role("button", name=re.compile("^(Confirm|Cancel) job"))).to_have_count(0)

    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    target = f"{world.console}/rollouts/{rollout['id']}/pause"
    # No CSRF token: the console refuses before calling anything.
    assert context.request.post(target, form={"reason": "x"}, max_redirects=0).status == 403
    # Another site's page posting the form: refused on its Origin.
    evil = context.request.post(target, form={"csrf": csrf}, headers={"Origin": "https://evil.example"},
                                max_redirects=0)
    assert evil.status == 403
    # A well-formed post with the viewer's own session: the rollout service refuses the viewer's token.
    forged = context.request.post(target, form={"csrf": csrf, "reason": "x"}, max_redirects=0)
    assert forged.status == 403
    assert "operator" in forged.text()
    approve = context.request.post(f"{world.console}/promotions/{world.other_pending}/approve",
                                   form={"csrf": csrf}, max_redirects=0)
    assert approve.status == 403
    assert _rollout_of(world, "2")["phase"] == "shadowing"  # type: ignore[index]
    pr = _call(world, lambda api: api.registry.get_promotion_request(world.other_pending))
    assert pr["status"] == "pending"
    context.close()


def test_the_main_pages_render_for_a_signed_in_person(world: World) -> None:
    context, page = _sign_in(world, "omar")
    row = page.get_by_role("row").filter(has_text=MODEL)
    expect(row).to_contain_text("shadow: v2")  # the live split while v2 shadows
    expect(row.get_by_role("link", name="v2").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "models-live.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 330})
    for path, heading, shot in (
        (f"/models/{MODEL}", MODEL, "model"),
        (f"/models/{MODEL}/versions/2", f"{MODEL} v2", "version"),
        (f"/models/{MODEL}/drift", f"Drift of {MODEL}", "drift"),
        ("/retrain", "Retraining", "retrain"),
    ):
        response = page.goto(world.console + path)
        assert response is not None and response.status == 200, path
        expect(page.get_by_role("heading", name=heading, exact=False).first).to_be_visible()
        _shot(page, shot)
        if shot == "version":
            expect(page.locator("main")).to_contain_text(LINEAGE["dataset"]["sha256"])
            expect(page.locator("main")).to_contain_text("gates and lineage checked")  # the review
    context.close()


# --------------------------------------------------------------------------- live, widths, names


def test_the_models_page_shows_a_new_model_without_a_reload(world: World) -> None:
    context, page = _sign_in(world, "vera")
    page.evaluate("window.__notReloaded = true")
    _call(world, lambda api: api.registry.create_model("credit-watched", description="appears live"))
    table = page.get_by_role("table", name="Models")
    expect(table.get_by_role("link", name="credit-watched")).to_be_visible(timeout=20_000)
    assert page.evaluate("window.__notReloaded") is True  # the list refreshed itself, the page did not reload
    context.close()


def _unnamed_controls(page: Page) -> list[str]:
    """Interactive nodes of the page's accessibility tree (as Chromium computes it) that have no name."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    interactive = {"button", "link", "textbox", "searchbox", "combobox", "checkbox", "radio", "spinbutton",
                   "listbox", "switch", "slider", "menuitem", "tab"}
    out = []
    for node in nodes:
        role = (node.get("role") or {}).get("value")
        if node.get("ignored") or role not in interactive:
            continue
        if not str((node.get("name") or {}).get("value") or "").strip():
            out.append(f"{role} (backend node {node.get('backendDOMNodeId')})")
    return out


def test_every_control_has_an_accessible_name_and_every_page_fits_a_phone_and_a_laptop(world: World) -> None:
    job = _call(world, lambda api: api.retrain.trigger(MODEL, reason="checking the page"), who="omar")
    rollout = _rollout_of(world, "2")
    assert rollout is not None
    pages = [
        "/models", f"/models/{MODEL}", f"/models/{MODEL}/versions/2", f"/models/{MODEL}/drift", "/promotions",
        "/rollouts", f"/rollouts/{rollout['id']}", "/retrain", f"/retrain/jobs/{job['id']}", "/audit",
        f"/audit/lifecycle?model={MODEL}&version=2", f"/audit/serving?model={MODEL}", "/audit/verify",
    ]
    for width, height in ((1280, 800), (390, 844)):
        # An admin sees every button there is: the page with the most controls.
        context, page = _sign_in(world, "ada", width=width, height=height)
        for path in pages:
            response = page.goto(world.console + path)
            assert response is not None and response.status == 200, path
            assert _unnamed_controls(page) == [], (width, path)
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than a {width}px screen"
            # One snapshot in the page: a live part may replace its buttons between two separate queries.
            outside = page.evaluate(
                """w => [...document.querySelectorAll('button')]
                        .filter(b => b.getClientRects().length > 0)
                        .map(b => [b.getAttribute('aria-label') || b.textContent, b.getBoundingClientRect()])
                        .filter(([, r]) => r.left + window.scrollX < 0 || r.right + window.scrollX > w)
                        .map(([name]) => name)""",
                width,
            )
            assert outside == [], (width, path, outside)
        if width < 600:
            page.goto(world.console + "/promotions")
            _shot(page, "promotions-phone")
        context.close()
    context = world.browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.goto(world.console + "/login")
    assert _unnamed_controls(page) == []
    expect(page.get_by_label("Token")).to_be_visible()
    context.close()


# --------------------------------------------------------------------------- retrain and reject actions


def test_an_operator_cancels_a_retrain_job_and_a_viewers_forged_cancel_is_refused(world: World) -> None:
    # A model of its own: the scheduler runs one job per model at a time.
    _call(world, lambda api: api.registry.create_model("credit-cancelled", description="a job to cancel"))
    job = _call(world, lambda api: api.retrain.trigger("credit-cancelled", reason="to be cancelled"), who="omar")
    context, page = _sign_in(world, "vera")
    page.goto(world.console + "/retrain")
    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    forged = context.request.post(f"{world.console}/retrain/jobs/{job['id']}/cancel",
                                  form={"csrf": csrf or "", "reason": "x"}, max_redirects=0)
    assert forged.status == 403
    context.close()
    assert _call(world, lambda api: api.retrain.get_job(job["id"]))["state"] == job["state"]

    context, page = _sign_in(world, "omar")
    page.goto(world.console + "/retrain")
    page.get_by_role("button", name=f"Cancel job {job['id']}").click()
    expect(page.get_by_role("status")).to_contain_text("Cancelled")
    expect(page.get_by_role("button", name=f"Cancel job {job['id']}")).to_have_count(0)
    assert _call(world, lambda api: api.retrain.get_job(job["id"]))["state"] == "cancelled"
    context.close()


def test_every_action_without_the_sessions_csrf_token_is_refused(world: World) -> None:
    rollout = _rollout_of(world, "2")
    assert rollout is not None
    context, page = _sign_in(world, "ada")
    page.goto(world.console + "/rollouts")
    real = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    for path in (f"/promotions/{world.other_pending}/approve", f"/promotions/{world.other_pending}/reject",
                 f"/rollouts/{rollout['id']}/pause", f"/rollouts/{rollout['id']}/resume",
                 f"/rollouts/{rollout['id']}/abort", f"/rollouts/{rollout['id']}/promote-step",
                 "/retrain/jobs/nope/confirm", "/retrain/jobs/nope/cancel", "/logout"):
        tampered = real[:-2] + ("AA" if not real.endswith("AA") else "BB")
        forms: list[dict[str, str | float | bool]] = [{}, {"csrf": ""}, {"csrf": tampered}]
        for form in forms:
            answer = context.request.post(world.console + path, form=form, max_redirects=0)
            assert answer.status == 403, (path, form, answer.status)
    # Still signed in (the logout was refused too) and nothing changed.
    expect(page.get_by_role("heading", name="Rollouts")).to_be_visible()
    assert page.goto(world.console + "/models") is not None and "/login" not in page.url
    assert _rollout_of(world, "2")["phase"] == "shadowing"  # type: ignore[index]
    assert _call(world, lambda api: api.registry.get_promotion_request(world.other_pending))["status"] == "pending"
    context.close()


def test_outside_development_the_session_cookie_is_secure(world: World) -> None:
    """The console as deployed (MLOOP_ENVIRONMENT=production), signed in from a real browser."""
    (port,) = find_free_ports(1)
    spec = dataclasses.replace(next(s for s in world.platform.services if s.name == "console"), port=port)
    urls = {s.env_key: s.url for s in world.platform.services if s.name != "console"}
    paths = StackPaths(Path(tempfile.mkdtemp(prefix="mloop-console-prod-")))
    start_services(paths, {**urls, "MLOOP_ENVIRONMENT": "production"}, [spec], timeout=60)
    try:
        context = world.browser.new_context()
        page = context.new_page()
        page.goto(spec.url + "/login")
        page.get_by_label("Token").fill(world.tokens["rita"])
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Models")).to_be_visible()
        (cookie,) = context.cookies()
        assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"]) == (True, True, "Strict")
        page.goto(spec.url + "/promotions")
        expect(page.get_by_role("heading", name=re.compile("Promotion"))).to_be_visible()
        context.close()
    finally:
        stop_services(paths, [spec])
        shutil.rmtree(paths.root, ignore_errors=True)


def test_a_reviewer_rejects_a_promotion_with_a_comment(world: World) -> None:
    context, page = _sign_in(world, "rita")
    page.goto(world.console + "/promotions")
    card = page.get_by_role("region", name=f"Promotion of {MODEL} v3")
    card.get_by_label(f"Comment on {MODEL} v3").fill("the experiment lacks a data hash review")
    card.get_by_role("button", name=f"Reject {MODEL} v3").click()
    expect(page.get_by_role("status")).to_contain_text("Rejected")
    expect(page.get_by_role("region", name=f"Promotion of {MODEL} v3")).to_have_count(0)
    pr = _call(world, lambda api: api.registry.get_promotion_request(world.other_pending))
    assert pr["status"] == "rejected"
    assert "data hash review" in str(pr)
    context.close()


def test_the_drift_page_plots_each_features_statistic_against_its_threshold(world: World) -> None:
    def windows() -> int:
        return len(_call(world, lambda api: api.monitor.drift_history(DRIFTED, kind="data", limit=10)))

    # 2,000 predictions: the first 500 are the reference, then three windows of 500, the last two shifted.
    _wait(lambda: windows() >= 3, "three data-drift windows of the drifted model", timeout_s=90)
    context, page = _sign_in(world, "vera")
    page.goto(f"{world.console}/models/{DRIFTED}/drift")
    figure = page.get_by_role("img", name=re.compile("v1 data drift per feature"))
    expect(figure).to_be_visible()
    for feature in ("age", "income"):
        expect(figure).to_contain_text(feature)  # a line per feature, named in the legend
    latest = page.get_by_role("table", name="Latest window features").first
    expect(latest).to_contain_text("income")
    income = latest.get_by_role("row").filter(has_text="income")
    expect(income).to_contain_text("yes")  # the shifted feature drifted in the latest window
    _shot(page, "drift")
    report = context.request.get(f"{world.console}/models/{DRIFTED}/drift-report")
    assert report.status == 200 and "<svg" in report.text()
    context.close()
