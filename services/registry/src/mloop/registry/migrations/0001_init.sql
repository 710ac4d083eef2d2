-- The registry's own tables (schema "registry"). The runtime's outbox, inbox
-- and idempotency tables live next to them.

CREATE TABLE models (
    name            text PRIMARY KEY,
    description     text,
    tags            jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Per-model counters. Taking a number locks the model's row, so
    -- concurrent registrations are serialised and a rolled-back one
    -- returns its number: versions are gapless.
    last_version    integer NOT NULL DEFAULT 0,
    alias_seq       integer NOT NULL DEFAULT 0
);
CREATE INDEX models_tags ON models USING gin (tags jsonb_path_ops);

CREATE TABLE versions (
    id               bigserial UNIQUE,               -- creation order, for cursors across models
    model            text NOT NULL REFERENCES models (name),
    version          integer NOT NULL,
    seq              integer NOT NULL DEFAULT 0,      -- per-version event sequence
    status           text NOT NULL,
    artifact_uri     text NOT NULL,
    lineage          jsonb NOT NULL,
    metrics          jsonb NOT NULL DEFAULT '{}'::jsonb,
    segment_metrics  jsonb NOT NULL DEFAULT '{}'::jsonb,
    training_profile jsonb,
    description      text,
    tags             jsonb NOT NULL DEFAULT '{}'::jsonb,
    validation       jsonb NOT NULL,                 -- {passed, checks, policy}
    validation_passed boolean NOT NULL,
    served_traffic   boolean NOT NULL DEFAULT false,
    run_id           text,                           -- MLflow clients' run reference
    run_link         text,
    registered_by    text NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    archived_at      timestamptz,
    PRIMARY KEY (model, version)
);
CREATE INDEX versions_status ON versions (status, id);
CREATE INDEX versions_created ON versions (created_at, id);
CREATE INDEX versions_tags ON versions USING gin (tags jsonb_path_ops);

CREATE TABLE aliases (
    model       text NOT NULL REFERENCES models (name),
    alias       text NOT NULL,
    version     integer NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (model, alias),
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);
CREATE INDEX aliases_version ON aliases (model, version);

-- Every alias move, kept forever.
CREATE TABLE alias_history (
    id                bigserial PRIMARY KEY,
    model             text NOT NULL REFERENCES models (name),
    alias             text NOT NULL,
    version           integer,          -- null: the alias was removed
    previous_version  integer,
    seq               integer NOT NULL,
    actor             text NOT NULL,
    reason            text,
    at                timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX alias_history_model ON alias_history (model, id);

-- Validation/promotion policies as data: scope 'default' or 'model:<name>'.
-- A model's row holds only the fields it overrides.
CREATE TABLE policies (
    scope       text PRIMARY KEY,
    policy      jsonb NOT NULL,
    updated_by  text NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE promotion_requests (
    id             text PRIMARY KEY,
    model          text NOT NULL,
    version        integer NOT NULL,
    status         text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_by   text NOT NULL,      -- actor
    requester_sub  text NOT NULL,
    reason         text,
    required_approvals integer NOT NULL,
    previous_champion integer,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    decided_at     timestamptz,
    FOREIGN KEY (model, version) REFERENCES versions (model, version)
);
CREATE INDEX promotion_requests_status ON promotion_requests (status, created_at, id);
-- At most one pending request per version.
CREATE UNIQUE INDEX promotion_requests_one_pending ON promotion_requests (model, version) WHERE status = 'pending';

CREATE TABLE reviews (
    id             bigserial PRIMARY KEY,
    request_id     text NOT NULL REFERENCES promotion_requests (id),
    reviewer       text NOT NULL,      -- actor (user:<sub> or policy:<name>)
    reviewer_sub   text NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('approved', 'rejected')),
    comment        text,
    at             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX reviews_request ON reviews (request_id, id);

-- Rollout outcomes this registry applied (rollout-completed / -rolled-back).
CREATE TABLE rollouts_seen (
    rollout_id   text NOT NULL,
    model        text NOT NULL,
    version      integer NOT NULL,
    baseline_version text,
    outcome      text NOT NULL,
    seq          integer NOT NULL,
    reason       text NOT NULL DEFAULT '',
    event_id     text NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (rollout_id, outcome)
);
CREATE INDEX rollouts_seen_version ON rollouts_seen (model, version);
