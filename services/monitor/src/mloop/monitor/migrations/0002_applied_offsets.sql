-- The highest offset applied per partition, written with the window state.
-- Events below it are never applied again, even if the stored consumer
-- offset were to move backwards.
CREATE TABLE applied_offsets (
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
