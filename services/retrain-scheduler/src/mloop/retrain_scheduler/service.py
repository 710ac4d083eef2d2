"""The service layer: every change to a job, together with the events it
publishes, in the caller's transaction.

HTTP routes (``api.py``), Kafka handlers (``handlers.py``) and the webhook
dispatcher (``dispatch.py``) all change state through :class:`Scheduler`;
decisions come from :mod:`mloop.retrain_scheduler.domain`, SQL from
:mod:`mloop.retrain_scheduler.store`, and events go to the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from mloop.contracts.envelope import Event, new_event, uuid7
from mloop.contracts.payloads import (
    CycleTimeRecorded,
    DataQualityViolated,
    DataWindow,
    DriftDetected,
    GroundTruthLogged,
    ModelRegistered,
    PerformanceDegraded,
    PredictionLogged,
    RetrainCompleted,
    RetrainFailed,
    RetrainJobChanged,
    RetrainPolicyChanged,
    RetrainRequested,
    RolloutEvent,
)
from mloop.retrain_scheduler import store
from mloop.retrain_scheduler.domain import (
    TERMINAL_STATES,
    CountSignal,
    CreateJob,
    CycleOutcome,
    DataWaitOutcome,
    Decision,
    DeferJob,
    IgnoreSignal,
    Job,
    JobLimitReached,
    JobNotFound,
    JobPlan,
    JobState,
    JoinJob,
    RetrainPolicy,
    Signal,
    backoff_delay,
    decide,
    effective_policy,
    final_window,
    measure_cycle,
    new_job,
    plan_manual,
    quiet_until,
)
from mloop.retrain_scheduler.metrics import RetrainMetrics
from mloop.runtime.history import SettingChange
from mloop.runtime.outbox import enqueue

__all__ = ["SERVICE_ACTOR", "Scheduler", "utcnow"]

log = logging.getLogger(__name__)
SERVICE_ACTOR = "service:retrain-scheduler"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Scheduler:
    """Applies decisions and transitions; the caller owns the transaction."""

    source: str = "/mloop/retrain-scheduler"
    clock: Callable[[], datetime] = utcnow
    new_id: Callable[[], str] = field(default=uuid7)
    metrics: RetrainMetrics | None = None

    # ------------------------------------------------------------------ policy

    async def policy_for(self, conn: asyncpg.Connection, model: str) -> RetrainPolicy:
        """The effective policy of ``model``: the default with its override merged in."""
        default = await store.load_default_policy(conn)
        return effective_policy(default, await store.load_override(conn, model))

    async def change_policy(
        self,
        conn: asyncpg.Connection,
        model: str | None,
        body: Mapping[str, Any] | None,
        *,
        actor: str,
        reason: str | None = None,
    ) -> SettingChange | None:
        """Set the default policy (``model`` None) or a model's override, or remove the override (``body`` None).

        The caller has validated ``body``. Keeps the change in the history and
        publishes ``retrain-policy-changed`` in the caller's transaction.
        Returns the recorded change, or None when there was no override to remove.
        """
        key = store.DEFAULT_POLICY_KEY if model is None else model
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"retrain-policy:{key}")
        previous = await store.load_override(conn, key)  # the stored body, the default's included
        if body is None:
            if not await store.delete_override(conn, key):
                return None
        else:
            await store.put_policy(conn, key, body, actor, self.clock())
        change = await store.POLICY_HISTORY.append(
            conn, key, None if body is None else dict(body), None if previous is None else dict(previous),
            actor=actor, reason=reason)
        effective = await store.load_default_policy(conn)
        if model is not None:
            effective = effective_policy(effective, body)
        await enqueue(conn, new_event("retrain-policy-changed", RetrainPolicyChanged(
            model=key, scope="default" if model is None else "model", policy=dict(body or {}),
            effective=effective.snapshot(), previous=previous, removed=body is None, changed_by=actor,
            reason=reason, seq=change.seq,
        ), source=self.source, actor=actor))
        return change

    # ------------------------------------------------------------------ signals

    async def on_signal(
        self,
        conn: asyncpg.Connection,
        event: Event[DriftDetected] | Event[PerformanceDegraded] | Event[DataQualityViolated],
    ) -> Decision:
        """Apply the policy to a monitoring signal; create a job when it says so."""
        signal = Signal.from_payload(event.id, event.time, event.data)
        await store.lock_model(conn, signal.model)
        policy = await self.policy_for(conn, signal.model)
        now = self.clock()
        state = await store.model_state(conn, signal.model, policy, now)
        decision = decide(policy, state, signal, now)
        if isinstance(decision, JoinJob):
            await store.insert_signal(conn, signal, decision="joined", reason=decision.detail, job_id=decision.job_id)
            await store.add_subjects(conn, decision.job_id, sorted(decision.subjects))
        elif isinstance(decision, IgnoreSignal):
            await store.insert_signal(conn, signal, decision="ignored", reason=f"{decision.reason}: {decision.detail}")
        elif isinstance(decision, CountSignal):
            await store.insert_signal(
                conn,
                signal,
                decision="counted",
                reason=f"{decision.count} of {decision.needed}",
                pending=True,
            )
        else:
            await store.insert_signal(
                conn, signal, decision="deferred" if isinstance(decision, DeferJob) else "created"
            )
            job = await self._create(conn, decision.plan, policy, actor=f"policy:retrain:{signal.model}", now=now)
            await store.attach_signals(conn, decision.plan.trigger_event_ids, job.id)
        if self.metrics is not None:
            self.metrics.signals.labels(signal=signal.kind, decision=decision.kind).inc()
        log.info(
            "signal %s for %s: %s",
            signal.kind,
            signal.model,
            decision.kind,
            extra={"event_id": event.id},
        )
        return decision

    async def trigger(
        self,
        conn: asyncpg.Connection,
        model: str,
        actor: str,
        *,
        data_window: DataWindow | None = None,
        reason: str = "",
    ) -> Job:
        """A manual job; raises :class:`JobLimitReached` when the model is at its limit."""
        await store.lock_model(conn, model)
        policy = await self.policy_for(conn, model)
        now = self.clock()
        state = await store.model_state(conn, model, policy, now)
        decision = plan_manual(policy, state, now, data_window=data_window)
        if not isinstance(decision, CreateJob | DeferJob):
            detail = decision.detail if isinstance(decision, IgnoreSignal) else decision.kind
            raise JobLimitReached(detail)
        return await self._create(conn, decision.plan, policy, actor=actor, now=now, detail=reason)

    # ------------------------------------------------------------------ lifecycle

    async def _create(
        self,
        conn: asyncpg.Connection,
        plan: JobPlan,
        policy: RetrainPolicy,
        *,
        actor: str,
        now: datetime,
        detail: str = "",
    ) -> Job:
        job = new_job(self.new_id(), plan, policy, requested_by=actor, at=now)
        if detail:
            job = job.model_copy(update={"detail": detail})
        await store.insert_job(conn, job)
        if self.metrics is not None:
            self.metrics.jobs_created.labels(trigger=job.trigger).inc()
        await store.insert_transition(conn, job, None, actor)
        await self._publish_change(conn, job, None, actor)
        if job.data_wait is not None and job.data_wait.waiting:
            log.info(
                "job %s for %s waits for %d post-signal rows (%d labelled), at most until %s",
                job.id,
                job.model,
                job.data_wait.min_rows,
                job.data_wait.min_labelled_rows,
                job.data_wait.deadline.isoformat(),
            )
        elif job.state is JobState.REQUESTED and job.dispatch_not_before is None:
            job = await self.release(conn, job, actor=SERVICE_ACTOR)
        return job

    async def move(
        self,
        conn: asyncpg.Connection,
        job: Job,
        target: JobState,
        *,
        actor: str,
        detail: str = "",
        at: datetime | None = None,
        update: dict[str, Any] | None = None,
        dispatch_body: str | None = None,
        request_event_id: str | None = None,
    ) -> Job:
        """Transition ``job`` (raises ``IllegalTransition``), persist it, publish
        ``retrain-job-changed``, and record a failed cycle when it ends badly."""
        previous = job.state
        moved = job.transition(target, at or self.clock(), detail)
        if update:
            moved = moved.model_copy(update=update)
        await store.update_job(conn, moved, dispatch_body=dispatch_body, request_event_id=request_event_id)
        if target in TERMINAL_STATES and moved.data_wait is not None and moved.data_wait.wants_labels:
            await store.forget_requests(conn, moved.id)
        await store.insert_transition(conn, moved, previous, actor)
        await self._publish_change(conn, moved, previous, actor)
        if target in (JobState.FAILED, JobState.TIMED_OUT):
            await self._record_cycle(conn, moved, "failed", moved.finished_at or self.clock())
        return moved

    async def release(self, conn: asyncpg.Connection, job: Job, *, actor: str) -> Job:
        """Dispatch: publish ``retrain-requested`` and, with a webhook, queue its delivery."""
        policy = RetrainPolicy.model_validate(job.policy)
        now = self.clock()
        payload = RetrainRequested(
            job_id=job.id,
            model=job.model,
            seq=job.seq + 1,
            trigger_event_ids=list(job.trigger_event_ids),
            trigger=job.trigger,
            data_window=job.data_window,
            policy=job.policy,
            base_version=job.base_version,
            requested_at=job.requested_at,
        )
        event = new_event("retrain-requested", payload, source=self.source, actor=actor, at=now)
        update: dict[str, Any] = {}
        if policy.webhook is not None:
            update = {"delivery": "pending", "attempts": 0, "next_attempt_at": now}
        moved = await self.move(
            conn,
            job,
            JobState.DISPATCHED,
            actor=actor,
            at=now,
            update=update,
            detail="retrain-requested published" + ("; webhook delivery queued" if update else ""),
            dispatch_body=payload.model_dump_json(by_alias=True),
            request_event_id=event.id,
        )
        await enqueue(conn, event)
        return moved

    async def confirm(self, conn: asyncpg.Connection, job_id: str, actor: str) -> Job:
        """A person confirmed the job: dispatch now, or after the quiet period."""
        job = await store.get_job(conn, job_id, for_update=True)
        now = self.clock()
        confirmed = {"confirmed_by": actor, "confirmed_at": now}
        if job.state is JobState.AWAITING_CONFIRMATION and job.data_wait is not None and job.data_wait.waiting:
            return await self.move(
                conn,
                job,
                JobState.REQUESTED,
                actor=actor,
                at=now,
                detail="confirmed; dispatch once the post-signal data has arrived",
                update=confirmed,
            )
        until = quiet_until(RetrainPolicy.model_validate(job.policy), now)
        if until is not None:
            return await self.move(
                conn,
                job,
                JobState.REQUESTED,
                actor=actor,
                at=now,
                detail=f"confirmed; dispatch after quiet hours at {until.isoformat()}",
                update={**confirmed, "dispatch_not_before": until},
            )
        if job.state is not JobState.AWAITING_CONFIRMATION:
            # Let the state machine name the state in its error.
            job.transition(JobState.REQUESTED, now)
        job = job.model_copy(update=confirmed)
        return await self.release(conn, job, actor=actor)

    async def cancel(self, conn: asyncpg.Connection, job_id: str, actor: str, reason: str = "") -> Job:
        job = await store.get_job(conn, job_id, for_update=True)
        return await self.move(conn, job, JobState.CANCELLED, actor=actor, detail=reason or f"cancelled by {actor}")

    async def report(
        self,
        conn: asyncpg.Connection,
        job_id: str,
        state: JobState,
        actor: str,
        *,
        version: str | None = None,
        reason: str = "",
        metrics: dict[str, float] | None = None,
    ) -> Job:
        """A training pipeline's report over HTTP. Completion and failure are
        also published as ``retrain-completed`` / ``retrain-failed`` for the record."""
        job = await store.get_job(conn, job_id, for_update=True)
        now = self.clock()
        update: dict[str, Any] = {}
        if version is not None:
            update["produced_version"] = version
        detail = reason or (f"produced version {version}" if version else "")
        moved = await self.move(conn, job, state, actor=actor, at=now, detail=detail, update=update)
        if state is JobState.COMPLETED:
            payload_c = RetrainCompleted(
                job_id=job.id,
                model=job.model,
                version=version,
                finished_at=now,
                metrics=metrics or {},
            )
            await enqueue(conn, new_event("retrain-completed", payload_c, source=self.source, actor=actor))
        elif state is JobState.FAILED:
            payload_f = RetrainFailed(
                job_id=job.id, model=job.model, reason=reason or "reported failed", finished_at=now
            )
            await enqueue(conn, new_event("retrain-failed", payload_f, source=self.source, actor=actor))
        return moved

    # ------------------------------------------------------------------ pipeline events

    async def on_retrain_finished(
        self, conn: asyncpg.Connection, event: Event[RetrainCompleted] | Event[RetrainFailed]
    ) -> Job | None:
        """``retrain-completed`` / ``retrain-failed`` from a pipeline (or echoed
        from our own HTTP callback): move the job unless it already ended."""
        data = event.data
        job = await store.get_job(conn, data.job_id, for_update=True)
        target = JobState.COMPLETED if isinstance(data, RetrainCompleted) else JobState.FAILED
        if job.state in TERMINAL_STATES:
            if job.state is not target:
                log.warning("job %s is already %s; ignoring %s", job.id, job.state.value, event.topic)
            if isinstance(data, RetrainCompleted) and data.version and not job.produced_version:
                job = job.model_copy(update={"produced_version": data.version})
                await store.update_job(conn, job)
            return None
        actor = event.actor or event.source
        if isinstance(data, RetrainCompleted):
            update = {"produced_version": data.version} if data.version else {}
            detail = f"produced version {data.version}" if data.version else "completed"
            return await self.move(conn, job, target, actor=actor, at=data.finished_at, detail=detail, update=update)
        return await self.move(conn, job, target, actor=actor, at=data.finished_at, detail=data.reason)

    async def on_model_registered(self, conn: asyncpg.Connection, event: Event[ModelRegistered]) -> Job | None:
        """Link the version a job produced; complete the job if nobody said so yet;
        measure the cycle if the version's rollout already ended."""
        data = event.data
        job_id = data.lineage.retrain_job_id
        if not job_id:
            return None
        try:
            job = await store.get_job(conn, job_id, for_update=True)
        except JobNotFound:
            log.warning("model-registered names unknown retrain job %s; ignored", job_id)
            return None
        if job.model != data.model:
            log.warning("job %s is for %s, not %s; ignored", job_id, job.model, data.model)
            return None
        update = {"produced_version": data.version, "registered_at": data.created_at}
        if job.state in (JobState.DISPATCHED, JobState.RUNNING):
            job = await self.move(
                conn,
                job,
                JobState.COMPLETED,
                actor=event.actor or event.source,
                detail=f"registered version {data.version}",
                update=update,
            )
        else:
            job = job.model_copy(update=update)
            await store.update_job(conn, job)
        outcome = await store.rollout_outcome(conn, data.model, data.version)
        if outcome is not None:
            await self._record_cycle(conn, job, _cycle_outcome(outcome[0]), outcome[1])
        return job

    async def on_rollout_started(self, conn: asyncpg.Connection, event: Event[RolloutEvent]) -> None:
        """``rollout-started``: its candidate serves no production traffic until the rollout completes."""
        data = event.data
        await store.record_rollout(
            conn,
            rollout_id=data.rollout_id,
            model=data.model,
            candidate=data.version,
            baseline=data.baseline_version,
            state="in-rollout",
            at=event.time,
        )

    async def on_rollout_finished(self, conn: asyncpg.Connection, event: Event[RolloutEvent], outcome: str) -> None:
        """``rollout-completed`` / ``rollout-rolled-back``: close the loop of the job
        that produced this version (if any and if it is known yet)."""
        data = event.data
        await store.record_rollout(
            conn,
            rollout_id=data.rollout_id,
            model=data.model,
            candidate=data.version,
            baseline=data.baseline_version,
            state=outcome,
            at=event.time,
        )
        await store.insert_rollout_outcome(conn, data.model, data.version, outcome, data.rollout_id, event.time)
        job = await store.job_for_version(conn, data.model, data.version)
        if job is not None:
            await self._record_cycle(conn, job, _cycle_outcome(outcome), event.time)

    # ------------------------------------------------------------------ post-signal data

    async def on_traffic(
        self, conn: asyncpg.Connection, events: Sequence[Event[PredictionLogged] | Event[GroundTruthLogged]]
    ) -> int:
        """Count predictions (and their labels) made since the signal of every job that waits
        for them; end the wait of those that have enough. Returns how many waits ended."""
        models = sorted({e.data.model for e in events})
        waiting = await store.waiting_jobs(conn, models)
        if not waiting:
            return 0
        by_model: dict[str, list[Job]] = {}
        for job in waiting:
            by_model.setdefault(job.model, []).append(job)
        rows: dict[str, int] = {}
        labels: dict[str, list[str]] = {}
        for event in events:
            jobs = by_model.get(event.data.model)
            if not jobs:
                continue
            if isinstance(event.data, PredictionLogged):
                for job in jobs:
                    wait = job.data_wait
                    assert wait is not None
                    since = wait.since
                    fresh = [r.request_id for r in event.data.records if _aware(r.timestamp) >= since]
                    rows[job.id] = rows.get(job.id, 0) + len(fresh)
                    if wait.wants_labels:
                        await store.remember_requests(conn, job.id, fresh)
            elif isinstance(event.data, GroundTruthLogged):
                labels.setdefault(event.data.model, []).extend(r.request_id for r in event.data.records)
        labelled: dict[str, int] = {}
        for model, ids in labels.items():
            wanting = [j.id for j in by_model[model] if j.data_wait is not None and j.data_wait.wants_labels]
            labelled.update(await store.label_requests(conn, wanting, ids))
        now = self.clock()
        ended = 0
        for job in waiting:
            assert job.data_wait is not None
            if not rows.get(job.id) and not labelled.get(job.id):
                continue
            wait = job.data_wait.counted(rows.get(job.id, 0), labelled.get(job.id, 0))
            job = job.model_copy(update={"data_wait": wait})
            outcome = wait.due(now)
            if outcome is None:
                await store.update_job(conn, job)
                continue
            await self.end_wait(conn, job, outcome, now)
            ended += 1
        return ended

    async def end_wait(self, conn: asyncpg.Connection, job: Job, outcome: DataWaitOutcome, now: datetime) -> Job:
        """The wait is over: fix the job's training window to hold the post-signal data,
        and dispatch the job unless it still waits for confirmation or quiet hours."""
        assert job.data_wait is not None
        policy = RetrainPolicy.model_validate(job.policy)
        wait = job.data_wait.ended(now, outcome)
        window = final_window(policy, wait, now)
        if wait.wants_labels:
            await store.forget_requests(conn, job.id)
        job = job.model_copy(update={"data_wait": wait, "data_window": window})
        log.info(
            "job %s for %s: %s after %.1fs (%d rows, %d labelled); window %s .. %s",
            job.id,
            job.model,
            outcome,
            wait.seconds or 0.0,
            wait.rows,
            wait.labelled_rows,
            window.start.isoformat(),
            window.end.isoformat(),
        )
        if job.state is JobState.REQUESTED and (job.dispatch_not_before is None or job.dispatch_not_before <= now):
            return await self.release(conn, job, actor=SERVICE_ACTOR)
        await store.update_job(conn, job)
        return job

    # ------------------------------------------------------------------ dispatcher steps

    async def end_overdue_waits(self, conn: asyncpg.Connection, limit: int = 100) -> int:
        """Jobs that waited for post-signal data as long as their policy allows go ahead with what came."""
        now = self.clock()
        jobs = await store.overdue_data_waits(conn, now, limit)
        for job in jobs:
            await self.end_wait(conn, job, "max-wait", now)
        return len(jobs)

    async def release_due(self, conn: asyncpg.Connection, limit: int = 100) -> int:
        """Dispatch requested jobs whose quiet period has ended."""
        jobs = await store.due_releases(conn, self.clock(), limit)
        for job in jobs:
            await self.release(conn, job, actor=SERVICE_ACTOR)
        return len(jobs)

    async def time_out_overdue(self, conn: asyncpg.Connection, limit: int = 100) -> int:
        jobs = await store.overdue_jobs(conn, self.clock(), limit)
        for job in jobs:
            timeout = RetrainPolicy.model_validate(job.policy).job_timeout
            await self.move(
                conn,
                job,
                JobState.TIMED_OUT,
                actor=SERVICE_ACTOR,
                detail=f"no result within {timeout}",
            )
        return len(jobs)

    async def delivery_succeeded(self, conn: asyncpg.Connection, job_id: str, attempt: int, status: int) -> bool:
        """Record a delivered webhook; False when the attempt is stale (job moved on)."""
        job = await store.locked_delivery(conn, job_id, attempt)
        if job is None:
            return False
        job = job.model_copy(
            update={
                "delivery": "delivered",
                "next_attempt_at": None,
                "last_error": None,
                "detail": f"webhook answered {status} on attempt {attempt}",
            }
        )
        await store.update_job(conn, job)
        return True

    async def delivery_failed(
        self,
        conn: asyncpg.Connection,
        job_id: str,
        attempt: int,
        error: str,
        *,
        permanent: bool = False,
    ) -> Job | None:
        """Schedule the next attempt with backoff, or give up: the job fails and
        ``retrain-failed`` is published. None when the attempt is stale."""
        job = await store.locked_delivery(conn, job_id, attempt)
        if job is None:
            return None
        dispatch = RetrainPolicy.model_validate(job.policy).dispatch
        if permanent or attempt >= dispatch.max_attempts:
            return await self.give_up(conn, job, error)
        retry_at = self.clock() + backoff_delay(dispatch, attempt)
        job = job.model_copy(update={"next_attempt_at": retry_at, "last_error": error})
        await store.update_job(conn, job)
        return job

    async def give_up(self, conn: asyncpg.Connection, job: Job, error: str) -> Job:
        reason = f"webhook delivery gave up after {job.attempts} attempt(s): {error}"
        moved = await self.move(
            conn,
            job,
            JobState.FAILED,
            actor=SERVICE_ACTOR,
            detail=reason,
            update={"delivery": "gave-up", "next_attempt_at": None, "last_error": error},
        )
        payload = RetrainFailed(
            job_id=job.id,
            model=job.model,
            reason=reason,
            finished_at=moved.finished_at or self.clock(),
        )
        await enqueue(conn, new_event("retrain-failed", payload, source=self.source, actor=SERVICE_ACTOR))
        return moved

    async def give_up_exhausted(self, conn: asyncpg.Connection) -> int:
        """Fail jobs whose last attempt died with its instance."""
        jobs = await store.exhausted_deliveries(conn, self.clock())
        for job in jobs:
            await self.give_up(conn, job, job.last_error or "no answer recorded for the last attempt")
        return len(jobs)

    # ------------------------------------------------------------------ events

    async def _publish_change(self, conn: asyncpg.Connection, job: Job, previous: JobState | None, actor: str) -> None:
        payload = RetrainJobChanged(
            job_id=job.id,
            model=job.model,
            seq=job.seq,
            state=job.state.value,
            previous_state=previous.value if previous is not None else None,
            at=job.updated_at,
            detail=job.detail,
        )
        await enqueue(
            conn,
            new_event("retrain-job-changed", payload, source=self.source, actor=actor, at=job.updated_at),
        )

    async def _record_cycle(
        self, conn: asyncpg.Connection, job: Job, outcome: CycleOutcome, finished_at: datetime
    ) -> None:
        sla = RetrainPolicy.model_validate(job.policy).cycle_time_sla
        cycle = measure_cycle(job, outcome, finished_at, sla)
        if not await store.insert_cycle(conn, cycle):
            return
        payload = CycleTimeRecorded(
            job_id=cycle.job_id,
            model=cycle.model,
            version=cycle.version,
            outcome=cycle.outcome,
            started_at=cycle.started_at,
            finished_at=cycle.finished_at,
            cycle_seconds=cycle.seconds,
            sla_seconds=cycle.sla_seconds,
            sla_breached=cycle.sla_breached,
            steps=cycle.steps,
        )
        await enqueue(
            conn,
            new_event("cycle-time-recorded", payload, source=self.source, actor=SERVICE_ACTOR),
        )
        if self.metrics is not None:
            self.metrics.cycle_seconds.labels(outcome=cycle.outcome).observe(cycle.seconds)
            if cycle.sla_breached:
                self.metrics.sla_breaches.inc()
        if cycle.sla_breached:
            log.warning(
                "cycle-time SLA breached for %s: %.0fs > %.0fs (job %s)",
                cycle.model,
                cycle.seconds,
                cycle.sla_seconds or 0,
                cycle.job_id,
            )


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _cycle_outcome(rollout_outcome: str) -> CycleOutcome:
    return "rolled-back" if rollout_outcome == "rolled-back" else "completed"
