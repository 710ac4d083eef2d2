-- Every change of a model's monitor configuration: who, when, old -> new, why.
CREATE TABLE config_history (
    id        bigserial PRIMARY KEY,
    model     text NOT NULL,
    seq       integer NOT NULL,
    config    jsonb NOT NULL,
    previous  jsonb,
    actor     text NOT NULL,
    reason    text,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (model, seq)
);
