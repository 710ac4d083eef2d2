-- The monitor's state: versions and their references, window state stored
-- with the consumer offsets, window verdicts, incidents, the prediction store.

-- Every (model, version) the monitor knows: registered (model-registered) or
-- first seen in traffic. The reference profile is written once.
CREATE TABLE model_versions (
    model            text NOT NULL,
    version          text NOT NULL,
    registered       boolean NOT NULL DEFAULT false,
    seq              bigint,
    metrics          jsonb NOT NULL DEFAULT '{}',
    feature_schema   jsonb NOT NULL DEFAULT '[]',
    reference        jsonb,
    reference_source text,
    profile_error    text,
    registered_at    timestamptz,
    first_seen_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version)
);

-- Window state per (model, version), rewritten in the transaction that also
-- stores the consumer offsets. rev changes with every write so an in-memory
-- copy can tell it is stale.
CREATE TABLE monitor_state (
    model      text NOT NULL,
    version    text NOT NULL,
    rev        bigint NOT NULL DEFAULT 0,
    state      jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, version),
    FOREIGN KEY (model, version) REFERENCES model_versions (model, version)
);

-- Thresholds and windows per model (operator-owned).
CREATE TABLE model_config (
    model      text PRIMARY KEY,
    config     jsonb NOT NULL,
    updated_by text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The latest routing table of each model (traffic-split-changed).
CREATE TABLE traffic_splits (
    model      text PRIMARY KEY,
    seq        bigint NOT NULL,
    rollout_id text,
    routes     jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per evaluated window and signal (data, prediction, quality, performance).
CREATE TABLE window_results (
    id           bigserial PRIMARY KEY,
    model        text NOT NULL,
    version      text NOT NULL,
    signal       text NOT NULL,
    window_no    integer NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    size         integer NOT NULL,
    alarm        boolean NOT NULL,
    severity     text,
    evidence     jsonb NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (model, version, signal, window_no)
);
CREATE INDEX window_results_by_model ON window_results (model, signal, id);

CREATE TABLE incidents (
    id            text PRIMARY KEY,
    model         text NOT NULL,
    version       text NOT NULL,
    signal        text NOT NULL,
    topic         text NOT NULL,
    opened_window integer NOT NULL,
    opened_at     timestamptz NOT NULL,
    resolved_at   timestamptz,
    evidence      jsonb NOT NULL
);
CREATE INDEX incidents_by_model ON incidents (model, version, opened_at);

-- The prediction store: why did the model say that, then? Retention-bound.
-- json (not jsonb): stored as sent, cheaper to write at prediction volume.
CREATE TABLE predictions (
    model      text NOT NULL,
    request_id text NOT NULL,
    version    text NOT NULL,
    ts         timestamptz NOT NULL,
    features   json,
    prediction json,
    label      json,
    labeled_at timestamptz,
    PRIMARY KEY (model, request_id)
);
CREATE INDEX predictions_by_request ON predictions (request_id);
CREATE INDEX predictions_by_time ON predictions (model, ts);

-- Labels that arrived before their prediction (topics are not ordered
-- across each other); joined when the prediction comes, dropped after the
-- late-label horizon.
CREATE TABLE pending_labels (
    model       text NOT NULL,
    request_id  text NOT NULL,
    label       jsonb NOT NULL,
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model, request_id)
);
