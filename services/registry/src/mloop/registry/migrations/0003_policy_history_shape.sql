-- The validation-policy history takes the shape of every other settings
-- history: a per-scope sequence, the policy before, and why.
ALTER TABLE policy_history
    ADD COLUMN seq      integer,
    ADD COLUMN previous jsonb,
    ADD COLUMN reason   text;

UPDATE policy_history h
   SET seq = n.seq, previous = n.previous
  FROM (SELECT id,
               row_number() OVER (PARTITION BY scope ORDER BY id) AS seq,
               lag(policy) OVER (PARTITION BY scope ORDER BY id) AS previous
          FROM policy_history) n
 WHERE h.id = n.id;

ALTER TABLE policy_history
    ALTER COLUMN seq SET NOT NULL,
    ADD CONSTRAINT policy_history_scope_seq UNIQUE (scope, seq);
