-- Every change of a validation policy (the default or a model's override),
-- kept forever: granting auto-approval or loosening a tolerance is a
-- governance decision like any other.
CREATE TABLE policy_history (
    id          bigserial PRIMARY KEY,
    scope       text NOT NULL,
    policy      jsonb,          -- null: the model's override was removed
    actor       text NOT NULL,
    at          timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX policy_history_scope ON policy_history (scope, id);
