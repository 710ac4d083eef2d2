"""The service layer: every change to a rollout, with what it publishes, in the caller's transaction.

HTTP routes (``api.py``), Kafka handlers and the analysis loop
(``handlers.py``) all change rollouts through :class:`RolloutService`.
Decisions come from the pure state machine (:mod:`mloop.rollout.domain.machine`),
SQL from :mod:`mloop.rollout.store`; the routing table and the rollout
events go to the outbox in the same transaction as the new state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event, new_event, uuid7
from mloop.contracts.payloads import (
    GroundTruthLogged,
    ModelPromoted,
    PredictionLogged,
    RolloutAdvanced,
    RolloutCompleted,
    RolloutEvent,
    RolloutPaused,
    RolloutPlanChanged,
    RolloutResumed,
    RolloutRolledBack,
    RolloutStarted,
    TrafficSplitChanged,
)
from mloop.rollout import store
from mloop.rollout.domain.evidence import VersionStats, is_correct
from mloop.rollout.domain.machine import (
    Action,
    Rollout,
    RolloutError,
    Transition,
    abort,
    act,
    analyse,
    new_rollout,
    next_analysis_at,
    samples_reached,
    start,
)
from mloop.rollout.domain.plan import RolloutPlan
from mloop.rollout.metrics import RolloutMetrics
from mloop.runtime.errors import PermanentError
from mloop.runtime.history import SettingChange
from mloop.runtime.outbox import enqueue

__all__ = ["SERVICE_ACTOR", "OpenRolloutExists", "RolloutNotFound", "RolloutRefused", "RolloutService", "utcnow"]

log = logging.getLogger(__name__)
SERVICE_ACTOR = "service:rollout"

TOPIC_OF: dict[type[RolloutEvent], str] = {
    RolloutStarted: "rollout-started",
    RolloutAdvanced: "rollout-advanced",
    RolloutPaused: "rollout-paused",
    RolloutResumed: "rollout-resumed",
    RolloutCompleted: "rollout-completed",
    RolloutRolledBack: "rollout-rolled-back",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class RolloutNotFound(RolloutError):
    """No rollout with that id (HTTP 404)."""


class RolloutRefused(RolloutError):
    """A rollout the one path to production does not allow: 403 (no approval for it) or 409 (approval used)."""

    def __init__(self, message: str, *, status: int = 403, promotion_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.promotion_id = promotion_id


@dataclass
class RolloutService:
    """Loads rollouts, applies the state machine, stores and publishes the result."""

    source: str = "/mloop/rollout"
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = field(default=uuid7)
    track_labels: bool = True
    metrics: RolloutMetrics | None = None

    # ------------------------------------------------------------------ committing

    async def commit(self, conn: asyncpg.Connection, t: Transition, *, actor: str) -> Rollout:
        """Store the new state and enqueue its routing table and events (routing table first)."""
        r = t.rollout
        now = self.clock()
        next_at = next_analysis_at(r, now)
        await store.save_rollout(conn, r, next_analysis_at=next_at)
        if next_at is not None:
            await store.wake_analysis(conn)
        if t.routes is not None:
            seq = await store.write_traffic_split(conn, r.model, r.id, t.routes)
            split = TrafficSplitChanged(model=r.model, seq=seq, rollout_id=r.id, routes=t.routes)
            await enqueue(conn, new_event("traffic-split-changed", split, source=self.source, actor=actor))
            await store.add_history(conn, r.id, now, "traffic-split-changed", actor, split.model_dump(mode="json"))
            self._count_event("traffic-split-changed")
        for event in t.events:
            topic = TOPIC_OF[type(event)]
            await enqueue(conn, new_event(topic, event, source=self.source, actor=actor))
            await store.add_history(conn, r.id, now, topic, actor, event.model_dump(mode="json"))
            self._count_event(topic)
        if t.analysis is not None:
            await store.add_history(conn, r.id, t.analysis.at, "analysis", actor, t.analysis.as_dict())
            if self.metrics is not None:
                self.metrics.analyses.labels(outcome=t.analysis.outcome, action=t.analysis.action).inc()
                for gate in t.analysis.gates:
                    self.metrics.gate_results.labels(gate=gate["name"], outcome=gate["outcome"]).inc()
        if r.terminal:
            await store.drop_awaiting_labels(conn, r.id)
        return r

    def _count_event(self, topic: str) -> None:
        if self.metrics is not None:
            self.metrics.events.labels(topic=topic).inc()

    # ------------------------------------------------------------------ starting

    async def on_model_promoted(self, conn: asyncpg.Connection, event: Event[ModelPromoted]) -> Rollout | None:
        """Remember the approved promotion and start a rollout of its version against the previous champion.

        A rollout of another version still open for the model is aborted
        (superseded); the same promotion seen again changes nothing. A
        promotion id seen before for another model or version is a
        :class:`PermanentError` (dead-lettered).
        """
        p = event.data
        actor = event.actor or f"user:{p.requested_by}"
        promotion = await store.record_promotion(conn, store.Promotion(
            promotion_request_id=p.promotion_request_id, model=p.model, version=p.version,
            previous_champion=p.previous_champion, requested_by=p.requested_by, approved_by=list(p.approved_by),
        ), event.id)
        if (promotion.model, promotion.version) != (p.model, p.version):
            raise PermanentError(f"promotion {p.promotion_request_id} was seen for {promotion.model} version "
                                 f"{promotion.version}; refusing it for {p.model} version {p.version}")
        if await store.promotion_used(conn, promotion.promotion_request_id) is not None:
            log.info("promotion %s already has its rollout; ignoring it seen again", p.promotion_request_id)
            return None
        open_ = await store.open_rollout(conn, p.model, for_update=True)
        if open_ is not None:
            if open_.candidate == p.version:
                log.info("rollout of %s %s already open; ignoring a repeated promotion", p.model, p.version)
                return None
            await self.commit(
                conn,
                abort(open_, now=self.clock(), actor=actor, reason=f"superseded by version {p.version}"),
                actor=actor,
            )
        reason = f"promoted by {p.requested_by}, approved by {', '.join(p.approved_by)}"
        r = await self.create(
            conn,
            model=p.model,
            candidate=p.version,
            baseline=p.previous_champion,
            plan=None,
            actor=actor,
            reason=reason,
            begin=True,
        )
        await store.link_promotion(conn, r.id, promotion.promotion_request_id)
        return r

    async def create_for_promotion(
        self,
        conn: asyncpg.Connection,
        *,
        promotion_id: str,
        model: str,
        candidate: str,
        baseline: str | None,
        plan: RolloutPlan | None,
        actor: str,
        reason: str = "",
        begin: bool = True,
    ) -> Rollout:
        """A rollout started by hand: only for an approved promotion this service consumed as ``model-promoted``.

        The promotion must name ``model`` and ``candidate``; the baseline is
        the promotion's previous champion (a different one is refused, it would
        route traffic to a version nobody approved); no rollout of the
        promotion may be running or completed. Raises :class:`RolloutRefused`
        (403: no such approval; 409: already used) or
        :class:`OpenRolloutExists`. Nothing is written when it raises.
        """
        promotion = await store.get_promotion(conn, promotion_id)
        if promotion is None:
            raise RolloutRefused(
                f"no approved promotion {promotion_id!r} has reached the rollout service; a rollout starts only "
                "for a version approved by a second person (model-promoted)", promotion_id=promotion_id)
        if (promotion.model, promotion.version) != (model, candidate):
            raise RolloutRefused(
                f"promotion {promotion_id} approved {promotion.model} version {promotion.version}, "
                f"not {model} version {candidate}", promotion_id=promotion_id)
        if baseline is not None and baseline != promotion.previous_champion:
            raise RolloutRefused(
                f"the baseline of promotion {promotion_id} is the champion it was approved against "
                f"({promotion.previous_champion}), not {baseline}", promotion_id=promotion_id)
        used = await store.promotion_used(conn, promotion_id)
        if used is not None:
            raise RolloutRefused(
                f"promotion {promotion_id} is already used by rollout {used[0]} ({used[1]}); an approval "
                "starts one rollout, and a failed one is retried with its retry action", status=409,
                promotion_id=promotion_id)
        r = await self.create(
            conn, model=model, candidate=candidate, baseline=promotion.previous_champion, plan=plan, actor=actor,
            reason=reason or f"restarted by {actor} for promotion {promotion_id}", begin=begin,
        )
        await store.link_promotion(conn, r.id, promotion_id)
        return r

    # ------------------------------------------------------------------ plans

    async def put_plan(
        self, conn: asyncpg.Connection, model: str, plan: RolloutPlan, *, actor: str, reason: str | None = None
    ) -> tuple[store.StoredPlan, SettingChange]:
        """Set the model's plan, keep the change in its history and publish ``rollout-plan-changed``."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"rollout-plan:{model}")
        before = await store.get_plan(conn, model)
        previous = before.plan.model_dump(mode="json") if before is not None else None
        stored = await store.put_plan(conn, model, plan, actor)
        doc = plan.model_dump(mode="json")
        change = await store.PLAN_HISTORY.append(conn, model, doc, previous, actor=actor, reason=reason)
        event = RolloutPlanChanged(model=model, plan=doc, previous=previous, changed_by=actor, reason=reason,
                                   seq=change.seq)
        await enqueue(conn, new_event("rollout-plan-changed", event, source=self.source, actor=actor))
        self._count_event("rollout-plan-changed")
        return stored, change

    async def create(
        self,
        conn: asyncpg.Connection,
        *,
        model: str,
        candidate: str,
        baseline: str | None,
        plan: RolloutPlan | None,
        actor: str,
        reason: str = "",
        begin: bool = True,
    ) -> Rollout:
        """A new rollout with the given plan (or the model's default), started unless ``begin`` is false.

        Raises :class:`~mloop.rollout.domain.machine.RolloutError` when the model
        already has an open rollout.
        """
        if await store.open_rollout(conn, model, for_update=True) is not None:
            raise OpenRolloutExists(model)
        if plan is None:
            stored = await store.get_plan(conn, model)
            plan = stored.plan if stored is not None else RolloutPlan()
        now = self.clock()
        r = new_rollout(
            rollout_id=self.new_id(), model=model, candidate=candidate, baseline=baseline, plan=plan, now=now
        )
        if not begin:
            await store.save_rollout(conn, r, next_analysis_at=None)
            return r
        return await self.commit(conn, start(r, now=now, actor=actor, reason=reason), actor=actor)

    # ------------------------------------------------------------------ operator actions

    async def act(
        self, conn: asyncpg.Connection, rollout_id: str, action: Action, *, actor: str, reason: str = ""
    ) -> Rollout:
        """Apply an operator action. Raises :class:`RolloutNotFound` or ``IllegalTransition``."""
        r = await store.get_rollout(conn, rollout_id, for_update=True)
        if r is None:
            raise RolloutNotFound(f"no rollout {rollout_id}")
        t = act(r, action, now=self.clock(), actor=actor, reason=reason)
        if t.rollout.attempt != r.attempt:
            await store.drop_old_evidence(conn, r.id, t.rollout.attempt)
        return await self.commit(conn, t, actor=actor)

    # ------------------------------------------------------------------ analysis

    async def analyse_due(self, pool: asyncpg.Pool) -> int:
        """Analyse every active rollout whose interval is due, each in its own transaction."""
        now = self.clock()
        async with pool.acquire() as conn:
            due = await store.due_rollouts(conn, now)
        for rollout_id in due:
            try:
                async with pool.acquire() as conn, conn.transaction():
                    await self.analyse_one(conn, rollout_id)
            except Exception:
                log.exception("analysis of rollout %s failed; it is retried at the next tick", rollout_id)
        return len(due)

    async def seconds_to_next_analysis(self, pool: asyncpg.Pool, at_most: float) -> float:
        """How long the analysis loop may sleep: until the earliest analysis due, at most ``at_most``."""
        async with pool.acquire() as conn:
            due = await store.next_analysis_due(conn)
        if due is None:
            return at_most
        return min(max((due - self.clock()).total_seconds(), 0.0), at_most)

    async def analyse_one(self, conn: asyncpg.Connection, rollout_id: str) -> Transition | None:
        row = await conn.fetchrow(
            "SELECT state FROM rollouts WHERE id = $1 AND next_analysis_at <= $2 FOR UPDATE SKIP LOCKED",
            rollout_id,
            self.clock(),
        )
        if row is None:  # another instance has it, or an action changed it meanwhile
            return None
        r = Rollout.model_validate(row["state"])
        evidence = await store.load_evidence(conn, r.id, r.attempt)
        t = analyse(r, evidence, now=self.clock(), actor=SERVICE_ACTOR)
        await self.commit(conn, t, actor=SERVICE_ACTOR)
        return t

    # ------------------------------------------------------------------ evidence

    async def forget_unlabelled(self, pool: asyncpg.Pool, wait: timedelta) -> int:
        async with pool.acquire() as conn:
            dropped = await store.forget_unlabelled(conn, self.clock() - wait)
        if dropped:
            log.info("forgot %d predictions whose label did not arrive within %s", dropped, wait)
        return dropped

    async def on_evidence(self, conn: asyncpg.Connection, events: Sequence[Event[Any]]) -> None:
        """Aggregate predictions and labels of open rollouts into their evidence."""
        models = {e.data.model for e in events}
        open_ = await store.open_rollouts_for(conn, models)
        if not open_:
            return
        deltas: dict[tuple[str, int, str], VersionStats] = {}
        awaiting: list[tuple[str, int, str, str, Any]] = []
        labels: dict[str, list[tuple[str, Any]]] = {}
        for event in events:
            r = open_.get(event.data.model)
            if r is None:
                continue
            if isinstance(event.data, PredictionLogged):
                for rec in event.data.records:
                    role = r.role_of(rec.version)
                    at = rec.timestamp if rec.timestamp.tzinfo else rec.timestamp.replace(tzinfo=UTC)
                    if role is None or at < r.created_at:  # another version, or from before the rollout
                        continue
                    key = (r.id, r.attempt, role)
                    stats = deltas.setdefault(key, VersionStats())
                    stats.record_prediction(
                        error=rec.error is not None, latency_ms=rec.latency_ms, prediction=rec.prediction
                    )
                    if self.track_labels and r.wants_labels and rec.error is None:
                        awaiting.append((r.id, r.attempt, rec.request_id, role, rec.prediction))
            elif isinstance(event.data, GroundTruthLogged):
                labels.setdefault(r.model, []).extend((g.request_id, g.label) for g in event.data.records)
        await store.remember_predictions(conn, awaiting)
        for model, pairs in labels.items():
            r = open_[model]
            by_id = dict(pairs)
            for request_id, role, prediction in await store.take_predictions(conn, r.id, r.attempt, list(by_id)):
                correct = is_correct(prediction, by_id[request_id])
                if correct is not None:
                    deltas.setdefault((r.id, r.attempt, role), VersionStats()).record_label(correct=correct)
        totals = await store.add_evidence(conn, deltas)
        await self._bring_forward(
            conn, {rid: stats.requests for (rid, _, role), stats in totals.items() if role == "candidate"}
        )
        if self.metrics is not None:
            self.metrics.evidence_records.labels(kind="prediction").inc(sum(s.requests for s in deltas.values()))
            self.metrics.evidence_records.labels(kind="label").inc(sum(s.labelled for s in deltas.values()))

    async def _bring_forward(self, conn: asyncpg.Connection, candidate_requests: dict[str, int]) -> None:
        """A step that has lasted long enough and waited for candidate requests is
        analysed as soon as they are in, not at its next interval."""
        if not candidate_requests:
            return
        now = self.clock()
        ready = [
            r.id
            for r in await store.rollouts_by_id(conn, list(candidate_requests))
            if samples_reached(r, candidate_requests[r.id], now)
        ]
        if ready and await store.analyse_now(conn, ready, now):
            await store.wake_analysis(conn)


class OpenRolloutExists(RolloutError):
    """The model already has an unfinished rollout (HTTP 409)."""

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model} already has an open rollout; abort it or let it finish first")
        self.model = model
