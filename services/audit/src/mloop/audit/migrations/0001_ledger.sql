-- The audit ledger: append-only, hash-chained per Kafka partition.
--
-- One chain per partition of each audited topic ("<topic>/<partition>").
-- seq is assigned by the writer without gaps (it is the Merkle leaf index);
-- canonical holds the exact bytes that were hashed and is authoritative,
-- the other columns are extracted from it for queries.

CREATE TABLE ledger_chains (
    chain       text PRIMARY KEY,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    origin      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ledger (
    chain        text        NOT NULL,
    seq          bigint      NOT NULL CHECK (seq >= 0),
    event_id     text        NOT NULL,
    canonical    bytea       NOT NULL,
    leaf_hash    bytea       NOT NULL CHECK (length(leaf_hash) = 32),
    chain_hash   bytea       NOT NULL CHECK (length(chain_hash) = 32),
    topic        text        NOT NULL,
    kafka_offset bigint,
    event_type   text        NOT NULL,
    source       text        NOT NULL,
    subject      text,
    model        text,
    version      text,
    actor        text,
    event_time   timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    data         jsonb       NOT NULL,
    PRIMARY KEY (chain, seq),
    UNIQUE (event_id)
);
-- Keyset pagination is on (event_time, event_id) under every filter.
CREATE INDEX ledger_by_time ON ledger (event_time, event_id);
CREATE INDEX ledger_by_model ON ledger (model, event_time, event_id);
CREATE INDEX ledger_by_model_version ON ledger (model, version, event_time, event_id);
CREATE INDEX ledger_by_type ON ledger (event_type, event_time, event_id);
CREATE INDEX ledger_by_model_type ON ledger (model, event_type, event_time, event_id);
CREATE INDEX ledger_by_actor ON ledger (actor, event_time, event_id);

-- Perfect Merkle subtrees (level >= 1) completed by each append, so proofs
-- and tree heads are read, never recomputed. Level 0 is ledger.leaf_hash.
CREATE TABLE ledger_nodes (
    chain  text     NOT NULL,
    level  smallint NOT NULL CHECK (level >= 1),
    index  bigint   NOT NULL CHECK (index >= 0),
    hash   bytea    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (chain, level, index)
);

-- Signed tree heads. The same notes are written to files outside Postgres.
CREATE TABLE ledger_checkpoints (
    chain      text        NOT NULL,
    size       bigint      NOT NULL CHECK (size >= 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    origin     text        NOT NULL,
    signed_at  timestamptz NOT NULL,
    key_name   text        NOT NULL,
    note       text        NOT NULL,
    PRIMARY KEY (chain, size)
);

-- Append-only in the database itself: UPDATE, DELETE and TRUNCATE are
-- rejected for everyone, and ENABLE ALWAYS keeps the triggers firing under
-- session_replication_role = replica too. Only disabling a trigger (which
-- takes the table owner or a superuser) gets past them, and verification
-- against the checkpoints kept outside Postgres reveals what was done then.
CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit ledger is append-only: % on %.% is not allowed',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['ledger', 'ledger_nodes', 'ledger_checkpoints', 'ledger_chains'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledger_reject_change()', t || '_append_only', t);
        EXECUTE format(
            'CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT '
            'EXECUTE FUNCTION ledger_reject_change()', t || '_no_truncate', t);
        EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_append_only');
        EXECUTE format('ALTER TABLE %I ENABLE ALWAYS TRIGGER %I', t, t || '_no_truncate');
    END LOOP;
END
$$;

-- The role ingestion writes as: INSERT and SELECT on the ledger tables, and
-- what the runtime's offset store needs. Roles are cluster-wide, so it may
-- exist already (another database, a concurrent migration).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'mloop_audit_writer') THEN
        BEGIN
            CREATE ROLE mloop_audit_writer NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END IF;
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO mloop_audit_writer', current_schema());
    -- The login user must be able to SET ROLE to it; a superuser always can.
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        BEGIN
            EXECUTE format('GRANT mloop_audit_writer TO %I', current_user);
        EXCEPTION WHEN insufficient_privilege OR invalid_grant_operation THEN
            RAISE NOTICE 'cannot grant mloop_audit_writer to %: ingestion writes as the login user', current_user;
        END;
    END IF;
END
$$;

REVOKE ALL ON ledger, ledger_nodes, ledger_checkpoints, ledger_chains FROM PUBLIC;
GRANT SELECT, INSERT ON ledger, ledger_nodes, ledger_checkpoints, ledger_chains TO mloop_audit_writer;
GRANT SELECT, INSERT, UPDATE ON consumer_offsets TO mloop_audit_writer;
