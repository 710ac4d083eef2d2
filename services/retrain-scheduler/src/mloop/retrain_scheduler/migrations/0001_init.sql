-- Retrain scheduler: policies, jobs and their transitions, the signals that
-- caused them, rollout outcomes and measured cycle times.

-- Policies as data. The row with model '*' is the default policy (a full
-- policy); any other row is a model's partial override, merged over it.
CREATE TABLE policies (
    model       text PRIMARY KEY,
    body        jsonb NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE jobs (
    id                   text PRIMARY KEY,
    model                text NOT NULL,
    state                text NOT NULL,
    seq                  integer NOT NULL,
    trigger              text NOT NULL,
    trigger_event_ids    jsonb NOT NULL,
    first_signal_at      timestamptz NOT NULL,
    data_window_start    timestamptz NOT NULL,
    data_window_end      timestamptz NOT NULL,
    policy               jsonb NOT NULL,
    requested_by         text NOT NULL,
    requested_at         timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    dispatch_not_before  timestamptz,
    confirmed_by         text,
    confirmed_at         timestamptz,
    dispatched_at        timestamptz,
    running_at           timestamptz,
    finished_at          timestamptz,
    produced_version     text,
    registered_at        timestamptz,
    detail               text NOT NULL DEFAULT '',
    -- Webhook delivery, kept here so a restart resumes it: 'none' (no
    -- webhook), 'pending', 'delivered' or 'gave-up'. ``attempts`` is also the
    -- fencing token of the instance that claimed the current attempt;
    -- ``next_attempt_at`` is the claim's lease while an attempt is in flight.
    delivery             text NOT NULL DEFAULT 'none',
    attempts             integer NOT NULL DEFAULT 0,
    next_attempt_at      timestamptz,
    last_error           text,
    base_version         text,
    dispatch_body        text,
    request_event_id     text
);
CREATE INDEX jobs_by_model ON jobs (model, requested_at DESC, id DESC);
CREATE INDEX jobs_listing ON jobs (requested_at DESC, id DESC);
CREATE INDEX jobs_active ON jobs (model) WHERE state NOT IN ('completed', 'failed', 'timed-out', 'cancelled');
CREATE INDEX jobs_delivery_due ON jobs (next_attempt_at) WHERE delivery = 'pending';
CREATE INDEX jobs_release_due ON jobs (dispatch_not_before) WHERE state = 'requested';
CREATE INDEX jobs_version ON jobs (model, produced_version) WHERE produced_version IS NOT NULL;

CREATE TABLE job_transitions (
    job_id          text NOT NULL REFERENCES jobs (id),
    seq             integer NOT NULL,
    state           text NOT NULL,
    previous_state  text,
    at              timestamptz NOT NULL,
    actor           text NOT NULL,
    detail          text NOT NULL DEFAULT '',
    PRIMARY KEY (job_id, seq)
);

-- Every monitoring signal and what the policy made of it. ``pending`` rows
-- form the current streak toward ``consecutive_signals``.
CREATE TABLE signals (
    event_id     text PRIMARY KEY,
    model        text NOT NULL,
    kind         text NOT NULL,
    severity     text NOT NULL,
    at           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    decision     text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    pending      boolean NOT NULL DEFAULT false,
    job_id       text REFERENCES jobs (id)
);
CREATE INDEX signals_pending ON signals (model, at) WHERE pending;
CREATE INDEX signals_by_model ON signals (model, received_at DESC);

-- The first rollout outcome seen per version; kept even when it arrives
-- before the version's registration (topics are not ordered among themselves).
CREATE TABLE rollout_outcomes (
    model       text NOT NULL,
    version     text NOT NULL,
    outcome     text NOT NULL,
    rollout_id  text NOT NULL,
    at          timestamptz NOT NULL,
    PRIMARY KEY (model, version)
);

CREATE TABLE cycle_times (
    job_id        text PRIMARY KEY REFERENCES jobs (id),
    model         text NOT NULL,
    version       text,
    outcome       text NOT NULL,
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz NOT NULL,
    seconds       double precision NOT NULL,
    steps         jsonb NOT NULL,
    shares        jsonb NOT NULL,
    sla_seconds   double precision,
    sla_breached  boolean NOT NULL,
    recorded_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cycle_times_by_model ON cycle_times (model, finished_at DESC, job_id DESC);
