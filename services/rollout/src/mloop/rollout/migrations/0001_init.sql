-- The rollout service's schema: plans, rollouts with their history, the
-- current traffic split per model, and the live evidence per rollout.

-- Default rollout plan per model (validated RolloutPlan JSON).
CREATE TABLE plans (
    model       text PRIMARY KEY,
    plan        jsonb NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per rollout; ``state`` is the domain's Rollout as JSON, the other
-- columns are projections of it for queries.
CREATE TABLE rollouts (
    id                text PRIMARY KEY,
    model             text NOT NULL,
    candidate         text NOT NULL,
    baseline          text,
    phase             text NOT NULL,
    attempt           integer NOT NULL,
    state             jsonb NOT NULL,
    next_analysis_at  timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rollouts_by_model ON rollouts (model, created_at DESC, id DESC);
CREATE INDEX rollouts_by_created ON rollouts (created_at DESC, id DESC);
-- At most one unfinished rollout per model.
CREATE UNIQUE INDEX rollouts_one_open_per_model ON rollouts (model)
    WHERE phase IN ('initialized', 'shadowing', 'progressing', 'paused', 'promoting');
CREATE INDEX rollouts_due ON rollouts (next_analysis_at)
    WHERE phase IN ('shadowing', 'progressing', 'promoting');

-- Everything that happened to a rollout: the events it published
-- (kind = topic) and every analysis with its gate evidence (kind = 'analysis').
CREATE TABLE rollout_history (
    id          bigserial PRIMARY KEY,
    rollout_id  text NOT NULL REFERENCES rollouts (id),
    at          timestamptz NOT NULL,
    kind        text NOT NULL,
    actor       text,
    data        jsonb NOT NULL
);
CREATE INDEX rollout_history_by_rollout ON rollout_history (rollout_id, id);

-- The routing table in force per model, as last published on traffic-split-changed.
CREATE TABLE traffic_splits (
    model       text PRIMARY KEY,
    seq         bigint NOT NULL,
    rollout_id  text,
    routes      jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Live evidence (VersionStats JSON) per rollout attempt and side.
CREATE TABLE evidence (
    rollout_id  text NOT NULL,
    attempt     integer NOT NULL,
    role        text NOT NULL CHECK (role IN ('baseline', 'candidate')),
    stats       jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, attempt, role)
);

-- Predictions of an open rollout waiting for their label (accuracy gates).
CREATE TABLE awaiting_labels (
    rollout_id  text NOT NULL,
    attempt     integer NOT NULL,
    request_id  text NOT NULL,
    role        text NOT NULL,
    prediction  jsonb,
    logged_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rollout_id, attempt, request_id)
);
