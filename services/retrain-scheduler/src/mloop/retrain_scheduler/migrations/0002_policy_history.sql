-- Every change of the default retrain policy ('*') or a model's override:
-- who, when, old -> new (null when removed), why.
CREATE TABLE policy_history (
    id        bigserial PRIMARY KEY,
    model     text NOT NULL,
    seq       integer NOT NULL,
    body      jsonb,
    previous  jsonb,
    actor     text NOT NULL,
    reason    text,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (model, seq)
);
