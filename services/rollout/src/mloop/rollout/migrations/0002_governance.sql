-- One path to production: every approved promotion the service consumed
-- (model-promoted), and which rollout carries it; every change of a model's
-- rollout plan, with who, when, old -> new and why.

CREATE TABLE promotions (
    promotion_request_id  text PRIMARY KEY,
    model                 text NOT NULL,
    version               text NOT NULL,
    previous_champion     text,
    requested_by          text NOT NULL,
    approved_by           jsonb NOT NULL,
    event_id              text NOT NULL,
    seen_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX promotions_by_model ON promotions (model, seen_at DESC);

ALTER TABLE rollouts ADD COLUMN promotion_id text REFERENCES promotions (promotion_request_id);
CREATE INDEX rollouts_by_promotion ON rollouts (promotion_id) WHERE promotion_id IS NOT NULL;

CREATE TABLE plan_history (
    id        bigserial PRIMARY KEY,
    model     text NOT NULL,
    seq       integer NOT NULL,
    plan      jsonb NOT NULL,
    previous  jsonb,
    actor     text NOT NULL,
    reason    text,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (model, seq)
);
