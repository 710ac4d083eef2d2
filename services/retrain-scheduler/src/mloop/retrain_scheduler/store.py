"""SQL for the retrain scheduler's schema. Every function takes the caller's
connection: transactions are opened by the service layer, never here."""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from mloop.contracts.payloads import DataWindow
from mloop.retrain_scheduler.domain import (
    ACTIVE_STATES,
    CycleTime,
    InFlight,
    Job,
    JobNotFound,
    JobState,
    ModelState,
    PendingSignal,
    RetrainPolicy,
    RolloutRecord,
    Signal,
    in_flight,
    not_serving,
)
from mloop.runtime.history import SettingsHistory

__all__ = [
    "cycle_of",
    "POLICY_HISTORY",
    "DEFAULT_POLICY_KEY",
    "JobFilter",
    "Transition",
    "attach_signals",
    "claim_deliveries",
    "cycle_models",
    "cycles",
    "delete_override",
    "get_job",
    "insert_cycle",
    "insert_job",
    "insert_rollout_outcome",
    "insert_signal",
    "insert_transition",
    "job_for_version",
    "jobs_by_state",
    "list_jobs",
    "list_overrides",
    "list_signals",
    "load_default_policy",
    "load_override",
    "lock_model",
    "model_state",
    "put_policy",
    "rollout_outcome",
    "transitions",
    "update_job",
]

DEFAULT_POLICY_KEY = "*"
_ACTIVE = [s.value for s in ACTIVE_STATES]
_JOB_COLUMNS = (
    "id, model, state, seq, trigger, trigger_event_ids, first_signal_at, data_window_start, "
    "data_window_end, policy, requested_by, requested_at, updated_at, dispatch_not_before, "
    "confirmed_by, confirmed_at, dispatched_at, running_at, finished_at, produced_version, "
    "registered_at, detail, delivery, attempts, next_attempt_at, last_error, base_version, subjects, data_wait"
)


def _job(row: asyncpg.Record) -> Job:
    data = dict(row)
    data["data_window"] = DataWindow(start=data.pop("data_window_start"), end=data.pop("data_window_end"))
    data.pop("dispatch_body", None)
    data.pop("request_event_id", None)
    return Job.model_validate(data)


async def lock_model(conn: asyncpg.Connection, model: str) -> None:
    """Serialise decisions about one model across instances, until the transaction ends."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 42))", f"retrain:{model}")


# --------------------------------------------------------------------------- policies


async def load_default_policy(conn: asyncpg.Connection) -> RetrainPolicy:
    body = await conn.fetchval("SELECT body FROM policies WHERE model = $1", DEFAULT_POLICY_KEY)
    return RetrainPolicy() if body is None else RetrainPolicy.model_validate(body)


async def load_override(conn: asyncpg.Connection, model: str) -> dict[str, Any] | None:
    body = await conn.fetchval("SELECT body FROM policies WHERE model = $1", model)
    return None if body is None else dict(body)


async def list_overrides(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT model, body, updated_by, updated_at FROM policies WHERE model <> $1 ORDER BY model",
            DEFAULT_POLICY_KEY,
        )
    )


async def put_policy(
    conn: asyncpg.Connection, model: str, body: Mapping[str, Any], updated_by: str, at: datetime
) -> None:
    await conn.execute(
        "INSERT INTO policies (model, body, updated_by, updated_at) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (model) DO UPDATE SET body = EXCLUDED.body, updated_by = EXCLUDED.updated_by, "
        "updated_at = EXCLUDED.updated_at",
        model,
        dict(body),
        updated_by,
        at,
    )


async def delete_override(conn: asyncpg.Connection, model: str) -> bool:
    status: str = await conn.execute("DELETE FROM policies WHERE model = $1", model)
    return status.endswith(" 1")


#: Every change of the default policy (``DEFAULT_POLICY_KEY``) or a model's override; ``body`` null when removed.
POLICY_HISTORY = SettingsHistory("policy_history", value_column="body")


# --------------------------------------------------------------------------- signals


async def model_state(conn: asyncpg.Connection, model: str, policy: RetrainPolicy, now: datetime) -> ModelState:
    """What the policy needs to decide about ``model`` at ``now``."""
    row = await conn.fetchrow(
        "SELECT count(*) FILTER (WHERE state = ANY($2::text[])) AS active, "
        "max(GREATEST(requested_at, finished_at)) AS last_job_at FROM jobs WHERE model = $1",
        model,
        _ACTIVE,
    )
    pending = await conn.fetch(
        "SELECT event_id, kind, at, subjects FROM signals WHERE model = $1 AND pending ORDER BY at, event_id",
        model,
    )
    recent = await conn.fetch(
        f"SELECT {_JOB_COLUMNS}, EXISTS (SELECT 1 FROM rollout_outcomes o WHERE o.model = jobs.model "
        "AND o.version = jobs.produced_version) AS rollout_finished FROM jobs WHERE model = $1 "
        "AND (state = ANY($2::text[]) OR (state = 'completed' AND produced_version IS NOT NULL "
        "AND finished_at >= $3))",
        model,
        _ACTIVE,
        now - policy.storm_guard.in_flight_max,
    )
    flying: list[InFlight] = []
    for r in recent:
        job = _job(r)
        if in_flight(job, policy, bool(r["rollout_finished"]), now):
            flying.append(InFlight(job.id, frozenset(job.subjects), job.active, job.produced_version))
    rollouts = await conn.fetch(
        "SELECT rollout_id, candidate, baseline, state, at FROM rollouts WHERE model = $1", model
    )
    unreleased = await conn.fetch(
        "SELECT DISTINCT produced_version FROM jobs j WHERE model = $1 AND produced_version IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM rollout_outcomes o WHERE o.model = j.model "
        "AND o.version = j.produced_version)",
        model,
    )
    return ModelState(
        model=model,
        active_jobs=int(row["active"]) if row else 0,
        last_job_at=row["last_job_at"] if row else None,
        pending=tuple(
            PendingSignal(r["event_id"], r["kind"], r["at"], frozenset(r["subjects"] or ())) for r in pending
        ),
        in_flight=tuple(flying),
        not_serving=not_serving(
            (RolloutRecord(r["rollout_id"], r["candidate"], r["baseline"], r["state"], r["at"]) for r in rollouts),
            (r["produced_version"] for r in unreleased),
        ),
    )


async def insert_signal(
    conn: asyncpg.Connection,
    signal: Signal,
    *,
    decision: str,
    reason: str = "",
    pending: bool = False,
    job_id: str | None = None,
) -> bool:
    """Record a signal; False when it was already recorded."""
    status: str = await conn.execute(
        "INSERT INTO signals "
        "(event_id, model, kind, severity, at, decision, reason, pending, job_id, version, subjects) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (event_id) DO NOTHING",
        signal.event_id,
        signal.model,
        signal.kind,
        signal.severity,
        signal.at,
        decision,
        reason,
        pending,
        job_id,
        signal.version,
        sorted(signal.subjects),
    )
    return status.endswith(" 1")


async def add_subjects(conn: asyncpg.Connection, job_id: str, subjects: Sequence[str]) -> None:
    """A joining signal's subjects become the job's too."""
    await conn.execute(
        "UPDATE jobs SET subjects = (SELECT coalesce(jsonb_agg(DISTINCT s ORDER BY s), '[]'::jsonb) "
        "FROM (SELECT jsonb_array_elements_text(subjects) AS s UNION SELECT unnest($2::text[])) u) "
        "WHERE id = $1",
        job_id,
        list(subjects),
    )


async def attach_signals(conn: asyncpg.Connection, event_ids: Sequence[str], job_id: str) -> None:
    """The streak that led to ``job_id`` is used up."""
    await conn.execute(
        "UPDATE signals SET pending = false, job_id = $2 WHERE event_id = ANY($1::text[])",
        list(event_ids),
        job_id,
    )


async def list_signals(
    conn: asyncpg.Connection,
    model: str | None,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> builtins.list[asyncpg.Record]:
    """Recorded signals and their decisions, newest first."""
    return list(
        await conn.fetch(
            "SELECT event_id, model, kind, severity, at, received_at, decision, reason, pending, "
            "job_id, version, subjects FROM signals WHERE ($1::text IS NULL OR model = $1) "
            "AND ($2::timestamptz IS NULL OR (received_at, event_id) < ($2, $3)) "
            "ORDER BY received_at DESC, event_id DESC LIMIT $4",
            model,
            after[0] if after else None,
            after[1] if after else "",
            limit,
        )
    )


# --------------------------------------------------------------------------- jobs


async def insert_job(conn: asyncpg.Connection, job: Job) -> None:
    await conn.execute(
        f"INSERT INTO jobs ({_JOB_COLUMNS}, awaiting_data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
        "$10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, "
        "$29, $30)",
        *_job_values(job),
        _awaiting(job),
    )


def _awaiting(job: Job) -> bool:
    return job.data_wait is not None and job.data_wait.waiting and job.active


def _wait_json(job: Job) -> dict[str, Any] | None:
    return None if job.data_wait is None else job.data_wait.model_dump(mode="json")


def _job_values(job: Job) -> list[Any]:
    return [
        job.id,
        job.model,
        job.state.value,
        job.seq,
        job.trigger,
        list(job.trigger_event_ids),
        job.first_signal_at,
        job.data_window.start,
        job.data_window.end,
        job.policy,
        job.requested_by,
        job.requested_at,
        job.updated_at,
        job.dispatch_not_before,
        job.confirmed_by,
        job.confirmed_at,
        job.dispatched_at,
        job.running_at,
        job.finished_at,
        job.produced_version,
        job.registered_at,
        job.detail,
        job.delivery,
        job.attempts,
        job.next_attempt_at,
        job.last_error,
        job.base_version,
        list(job.subjects),
        _wait_json(job),
    ]


async def update_job(
    conn: asyncpg.Connection,
    job: Job,
    *,
    dispatch_body: str | None = None,
    request_event_id: str | None = None,
) -> None:
    """Write every mutable field of ``job`` (and, when given, the webhook body)."""
    await conn.execute(
        "UPDATE jobs SET state = $2, seq = $3, updated_at = $4, dispatch_not_before = $5, "
        "confirmed_by = $6, confirmed_at = $7, dispatched_at = $8, running_at = $9, "
        "finished_at = $10, produced_version = $11, registered_at = $12, detail = $13, "
        "delivery = $14, attempts = $15, next_attempt_at = $16, last_error = $17, "
        "dispatch_body = COALESCE($18, dispatch_body), "
        "request_event_id = COALESCE($19, request_event_id), data_window_start = $20, "
        "data_window_end = $21, data_wait = $22, awaiting_data = $23 WHERE id = $1",
        job.id,
        job.state.value,
        job.seq,
        job.updated_at,
        job.dispatch_not_before,
        job.confirmed_by,
        job.confirmed_at,
        job.dispatched_at,
        job.running_at,
        job.finished_at,
        job.produced_version,
        job.registered_at,
        job.detail,
        job.delivery,
        job.attempts,
        job.next_attempt_at,
        job.last_error,
        dispatch_body,
        request_event_id,
        job.data_window.start,
        job.data_window.end,
        _wait_json(job),
        _awaiting(job),
    )


async def get_job(conn: asyncpg.Connection, job_id: str, *, for_update: bool = False) -> Job:
    """The job; raises :class:`JobNotFound`."""
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1{lock}", job_id)
    if row is None:
        raise JobNotFound(job_id)
    return _job(row)


@dataclass(frozen=True)
class Transition:
    seq: int
    state: str
    previous_state: str | None
    at: datetime
    actor: str
    detail: str


async def insert_transition(conn: asyncpg.Connection, job: Job, previous: JobState | None, actor: str) -> None:
    await conn.execute(
        "INSERT INTO job_transitions (job_id, seq, state, previous_state, at, actor, detail) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        job.id,
        job.seq,
        job.state.value,
        previous.value if previous is not None else None,
        job.updated_at,
        actor,
        job.detail,
    )


async def transitions(conn: asyncpg.Connection, job_id: str) -> list[Transition]:
    rows = await conn.fetch(
        "SELECT seq, state, previous_state, at, actor, detail FROM job_transitions WHERE job_id = $1 ORDER BY seq",
        job_id,
    )
    return [Transition(**dict(r)) for r in rows]


@dataclass(frozen=True)
class JobFilter:
    #: Only these models (empty: every model).
    models: tuple[str, ...] = ()
    #: Only each model's newest job (among those the other filters keep).
    latest_per_model: bool = False
    states: tuple[str, ...] = ()
    trigger: str | None = None
    requested_after: datetime | None = None
    requested_before: datetime | None = None


async def list_jobs(
    conn: asyncpg.Connection,
    flt: JobFilter,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> builtins.list[Job]:
    """Newest first; ``after`` is the (requested_at, id) of the last job of the previous page."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if flt.models:
        where.append(f"model = ANY({arg(list(flt.models))}::text[])")
    if flt.states:
        where.append(f"state = ANY({arg(list(flt.states))}::text[])")
    if flt.trigger is not None:
        where.append(f"trigger = {arg(flt.trigger)}")
    if flt.requested_after is not None:
        where.append(f"requested_at >= {arg(flt.requested_after)}")
    if flt.requested_before is not None:
        where.append(f"requested_at < {arg(flt.requested_before)}")
    source = "jobs"
    if flt.latest_per_model:
        # Each model's newest job first, then the page is cut from those like any other list.
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        source = (f"(SELECT DISTINCT ON (model) * FROM jobs {clause} "
                  "ORDER BY model, requested_at DESC, id DESC) AS latest")
        where = []
    if after is not None:
        where.append(f"(requested_at, id) < ({arg(after[0])}, {arg(after[1])})")
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM {source} {clause} ORDER BY requested_at DESC, id DESC LIMIT {arg(limit)}",
        *args,
    )
    return [_job(r) for r in rows]


async def jobs_by_state(conn: asyncpg.Connection, model: str) -> dict[str, int]:
    rows = await conn.fetch("SELECT state, count(*) AS n FROM jobs WHERE model = $1 GROUP BY state", model)
    return {r["state"]: int(r["n"]) for r in rows}


async def job_for_version(conn: asyncpg.Connection, model: str, version: str) -> Job | None:
    row = await conn.fetchrow(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE model = $1 AND produced_version = $2 "
        "ORDER BY requested_at DESC LIMIT 1 FOR UPDATE",
        model,
        version,
    )
    return None if row is None else _job(row)


# --------------------------------------------------------------------------- dispatch


async def due_releases(conn: asyncpg.Connection, now: datetime, limit: int) -> builtins.list[Job]:
    """Requested jobs whose quiet period is over, locked for this transaction."""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state = 'requested' AND NOT awaiting_data "
        "AND (dispatch_not_before IS NULL OR dispatch_not_before <= $1) "
        "ORDER BY requested_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_job(r) for r in rows]


@dataclass(frozen=True)
class Delivery:
    """One claimed webhook attempt."""

    job_id: str
    model: str
    attempt: int
    body: str
    request_event_id: str | None
    policy: dict[str, Any]


async def claim_deliveries(
    conn: asyncpg.Connection,
    now: datetime,
    *,
    limit: int,
    lease_margin: timedelta,
    exclude: Sequence[str] = (),
) -> builtins.list[Delivery]:
    """Claim due webhook attempts: each claim bumps ``attempts`` (the fencing token)
    and leases the job until its request timeout plus ``lease_margin`` has passed,
    so a crashed instance's attempt is picked up again, never two at once."""
    rows = await conn.fetch(
        "WITH due AS ("
        "  SELECT id FROM jobs WHERE delivery = 'pending' AND next_attempt_at <= $1"
        "  AND NOT (id = ANY($3::text[]))"
        "  AND attempts < COALESCE((policy->'dispatch'->>'max_attempts')::int, 1)"
        "  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED) "
        "UPDATE jobs j SET attempts = j.attempts + 1, next_attempt_at = $1 + $4::interval "
        "+ COALESCE((j.policy->'dispatch'->>'request_timeout')::interval, interval '10 seconds') "
        "FROM due WHERE j.id = due.id "
        "RETURNING j.id, j.model, j.attempts, j.dispatch_body, j.request_event_id, j.policy",
        now,
        limit,
        list(exclude),
        lease_margin,
    )
    return [
        Delivery(
            r["id"],
            r["model"],
            r["attempts"],
            r["dispatch_body"] or "",
            r["request_event_id"],
            dict(r["policy"]),
        )
        for r in rows
    ]


async def exhausted_deliveries(conn: asyncpg.Connection, now: datetime) -> builtins.list[Job]:
    """Pending deliveries whose last attempt's lease ran out with no answer recorded
    (the instance died mid-attempt) and no attempts left. Locked for this transaction."""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE delivery = 'pending' AND next_attempt_at <= $1 "
        "AND attempts >= COALESCE((policy->'dispatch'->>'max_attempts')::int, 1) "
        "FOR UPDATE SKIP LOCKED",
        now,
    )
    return [_job(r) for r in rows]


async def locked_delivery(conn: asyncpg.Connection, job_id: str, attempt: int) -> Job | None:
    """The job if ``attempt`` is still its current pending attempt (lock held), else None."""
    row = await conn.fetchrow(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = $1 AND attempts = $2 AND delivery = 'pending' FOR UPDATE",
        job_id,
        attempt,
    )
    return None if row is None else _job(row)


async def overdue_jobs(conn: asyncpg.Connection, now: datetime, limit: int) -> builtins.list[Job]:
    """Dispatched or running jobs past their policy's timeout, locked."""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('dispatched', 'running') "
        "AND dispatched_at + COALESCE((policy->>'job_timeout')::interval, interval '12 hours') "
        "<= $1 "
        "LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_job(r) for r in rows]


# --------------------------------------------------------------------------- cycle time


async def insert_rollout_outcome(
    conn: asyncpg.Connection, model: str, version: str, outcome: str, rollout_id: str, at: datetime
) -> bool:
    """Keep the first outcome of a version; False when one was already kept."""
    status: str = await conn.execute(
        "INSERT INTO rollout_outcomes (model, version, outcome, rollout_id, at) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (model, version) DO NOTHING",
        model,
        version,
        outcome,
        rollout_id,
        at,
    )
    return status.endswith(" 1")


async def rollout_outcome(conn: asyncpg.Connection, model: str, version: str) -> tuple[str, datetime] | None:
    row = await conn.fetchrow(
        "SELECT outcome, at FROM rollout_outcomes WHERE model = $1 AND version = $2", model, version
    )
    return None if row is None else (row["outcome"], row["at"])


async def insert_cycle(conn: asyncpg.Connection, c: CycleTime) -> bool:
    """Record a cycle once per job; False when the job already has one.

    A ``failed`` record gives way to a real rollout outcome: a job that timed
    out may still have produced a version that reached production."""
    status: str = await conn.execute(
        "INSERT INTO cycle_times (job_id, model, version, outcome, started_at, finished_at, "
        "seconds, steps, shares, sla_seconds, sla_breached) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
        "ON CONFLICT (job_id) DO UPDATE SET version = EXCLUDED.version, "
        "outcome = EXCLUDED.outcome, finished_at = EXCLUDED.finished_at, "
        "seconds = EXCLUDED.seconds, steps = EXCLUDED.steps, shares = EXCLUDED.shares, "
        "sla_seconds = EXCLUDED.sla_seconds, sla_breached = EXCLUDED.sla_breached, "
        "recorded_at = now() "
        "WHERE cycle_times.outcome = 'failed' AND EXCLUDED.outcome <> 'failed'",
        c.job_id,
        c.model,
        c.version,
        c.outcome,
        c.started_at,
        c.finished_at,
        c.seconds,
        c.steps,
        c.shares,
        c.sla_seconds,
        c.sla_breached,
    )
    return status.endswith(" 1")


def _cycle(r: asyncpg.Record) -> CycleTime:
    return CycleTime(
        job_id=r["job_id"],
        model=r["model"],
        version=r["version"],
        outcome=r["outcome"],
        started_at=r["started_at"],
        finished_at=r["finished_at"],
        seconds=r["seconds"],
        steps=dict(r["steps"]),
        shares=dict(r["shares"]),
        sla_seconds=r["sla_seconds"],
        sla_breached=r["sla_breached"],
    )


async def cycle_of(conn: asyncpg.Connection, job_id: str) -> CycleTime | None:
    """The recorded cycle time of a job, None until its loop closed."""
    row = await conn.fetchrow("SELECT * FROM cycle_times WHERE job_id = $1", job_id)
    return _cycle(row) if row is not None else None


async def cycles(
    conn: asyncpg.Connection,
    model: str | None = None,
    *,
    since: datetime | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int | None = None,
) -> builtins.list[CycleTime]:
    """Recorded cycles, newest first."""
    rows = await conn.fetch(
        "SELECT * FROM cycle_times WHERE ($1::text IS NULL OR model = $1) "
        "AND ($2::timestamptz IS NULL OR finished_at >= $2) "
        "AND ($3::timestamptz IS NULL OR (finished_at, job_id) < ($3, $4)) "
        "ORDER BY finished_at DESC, job_id DESC LIMIT $5",
        model,
        since,
        after[0] if after else None,
        after[1] if after else "",
        limit,
    )
    return [_cycle(r) for r in rows]


async def cycle_models(conn: asyncpg.Connection) -> builtins.list[str]:
    rows = await conn.fetch("SELECT DISTINCT model FROM jobs ORDER BY model")
    return [r["model"] for r in rows]


# --------------------------------------------------------------------------- post-signal data


async def waiting_jobs(conn: asyncpg.Connection, models: Sequence[str]) -> builtins.list[Job]:
    """Jobs of ``models`` that wait for post-signal data, locked for this transaction."""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE awaiting_data AND model = ANY($1::text[]) "
        "ORDER BY requested_at FOR UPDATE",
        list(models),
    )
    return [_job(r) for r in rows]


async def overdue_data_waits(conn: asyncpg.Connection, now: datetime, limit: int = 100) -> builtins.list[Job]:
    """Waiting jobs whose maximum wait has passed, locked (skipping those another instance holds)."""
    rows = await conn.fetch(
        f"SELECT {_JOB_COLUMNS} FROM jobs WHERE awaiting_data "
        "AND (data_wait->>'deadline')::timestamptz <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED",
        now,
        limit,
    )
    return [_job(r) for r in rows]


async def remember_requests(conn: asyncpg.Connection, job_id: str, request_ids: Sequence[str]) -> None:
    """Post-signal predictions of a job that waits for their labels."""
    if request_ids:
        await conn.execute(
            "INSERT INTO awaited_requests (job_id, request_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING",
            job_id,
            list(request_ids),
        )


async def label_requests(
    conn: asyncpg.Connection, job_ids: Sequence[str], request_ids: Sequence[str]
) -> dict[str, int]:
    """Mark the awaited requests among ``request_ids`` labelled; how many became so, per job."""
    if not job_ids or not request_ids:
        return {}
    rows = await conn.fetch(
        "WITH hit AS (UPDATE awaited_requests SET labelled = true WHERE job_id = ANY($1::text[]) "
        "AND request_id = ANY($2::text[]) AND NOT labelled RETURNING job_id) "
        "SELECT job_id, count(*) AS n FROM hit GROUP BY job_id",
        list(job_ids),
        list(request_ids),
    )
    return {r["job_id"]: int(r["n"]) for r in rows}


async def forget_requests(conn: asyncpg.Connection, job_id: str) -> None:
    await conn.execute("DELETE FROM awaited_requests WHERE job_id = $1", job_id)


# --------------------------------------------------------------------------- rollouts


async def record_rollout(
    conn: asyncpg.Connection,
    *,
    rollout_id: str,
    model: str,
    candidate: str,
    baseline: str | None,
    state: str,
    at: datetime,
) -> None:
    """Remember a rollout; an end (completed, rolled back) wins over a start whatever their order."""
    await conn.execute(
        "INSERT INTO rollouts (rollout_id, model, candidate, baseline, state, at) VALUES ($1, $2, $3, $4, $5, $6) "
        "ON CONFLICT (rollout_id) DO UPDATE SET state = EXCLUDED.state, at = EXCLUDED.at, "
        "baseline = COALESCE(rollouts.baseline, EXCLUDED.baseline) "
        "WHERE rollouts.state = 'in-rollout' AND EXCLUDED.state <> 'in-rollout'",
        rollout_id,
        model,
        candidate,
        baseline,
        state,
        at,
    )
