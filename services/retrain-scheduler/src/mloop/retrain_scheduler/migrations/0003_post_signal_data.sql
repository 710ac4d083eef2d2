-- Jobs that wait for post-signal data, the storm guard's view of rollouts,
-- and what each job is about (the subjects a later signal can join on).

ALTER TABLE jobs
    ADD COLUMN subjects      jsonb NOT NULL DEFAULT '[]',
    -- The wait and its counters (DataWait as JSON); null when the job did not wait.
    ADD COLUMN data_wait     jsonb,
    -- True while the job waits: it is not dispatched, and traffic is counted for it.
    ADD COLUMN awaiting_data boolean NOT NULL DEFAULT false;
CREATE INDEX jobs_awaiting_data ON jobs (model) WHERE awaiting_data;

-- Request ids of post-signal predictions of a waiting job that needs labelled
-- rows; a label counts once, when its request id is here. Dropped when the wait ends.
CREATE TABLE awaited_requests (
    job_id      text NOT NULL REFERENCES jobs (id),
    request_id  text NOT NULL,
    labelled    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (job_id, request_id)
);

-- Every rollout seen on rollout-started / -completed / -rolled-back.
CREATE TABLE rollouts (
    rollout_id  text PRIMARY KEY,
    model       text NOT NULL,
    candidate   text NOT NULL,
    baseline    text,
    state       text NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX rollouts_by_model ON rollouts (model, at);

ALTER TABLE signals ADD COLUMN version text, ADD COLUMN subjects jsonb NOT NULL DEFAULT '[]';
