-- Verification by time range, against exported digests, and from checkpoints.
BEGIN;
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid,
       '2026-03-01Z'::timestamptz + i * interval '1 day', 'event.' || i, 'success'
  FROM generate_series(1, 20) i;

-- A range checks its events and the links to the neighbours outside it.
SELECT * FROM agentidp.agentidp_verify_chain('2026-03-05Z', '2026-03-10Z');
SELECT * FROM agentidp.agentidp_verify_chain(from_ts => '2026-03-15Z');
SELECT * FROM agentidp.agentidp_verify_chain(to_ts => '2026-03-03Z');
SELECT * FROM agentidp.agentidp_verify_chain('2027-01-01Z', '2027-02-01Z');
SELECT * FROM agentidp.agentidp_verify_chain('2026-03-10Z', '2026-03-05Z');
ROLLBACK;

BEGIN;
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid,
       '2026-03-01Z'::timestamptz + i * interval '1 day', 'event.' || i, 'success'
  FROM generate_series(1, 20) i;
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
SAVEPOINT intact;
-- Outside the range nothing is recomputed; the link into the range is checked.
UPDATE agentidp.audit_events SET action = 'changed' WHERE seq = 2;
SELECT verified, checked_count FROM agentidp.agentidp_verify_chain('2026-03-05Z', '2026-03-10Z');
ROLLBACK TO SAVEPOINT intact;
UPDATE agentidp.audit_events SET prev_hash = sha256('x') WHERE seq = 10;
SELECT verified, checked_count, break_kind, right(broken_at_event_id::text, 2) AS broken
  FROM agentidp.agentidp_verify_chain('2026-03-05Z', '2026-03-10Z');
ROLLBACK TO SAVEPOINT intact;
DELETE FROM agentidp.audit_events WHERE seq = 4;
SELECT verified, checked_count, break_kind, right(broken_at_event_id::text, 2) AS broken
  FROM agentidp.agentidp_verify_chain('2026-03-05Z', '2026-03-10Z');
ROLLBACK TO SAVEPOINT intact;

ROLLBACK;

-- Digests: a head exported now still verifies later, as the chain grows. The rows are committed
-- here (and removed at the end) because an attacker rewrites history in transactions of its own.
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid,
       '2026-03-01Z'::timestamptz + i * interval '1 day', 'event.' || i, 'success'
  FROM generate_series(1, 20) i;
CREATE TEMP TABLE digest AS SELECT * FROM agentidp.agentidp_chain_heads();
SELECT chain_id, seq, length(hash) FROM digest;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('later', 'success');
SELECT verified, checked_count, break_kind
  FROM digest, agentidp.agentidp_verify_digest(digest.chain_id, digest.seq, digest.hash);
BEGIN;
-- A cut tail verifies as a chain, but not against the digest.
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
DELETE FROM agentidp.audit_events WHERE seq >= 15;
SELECT * FROM agentidp.agentidp_verify_chain();
SELECT verified, checked_count, break_kind
  FROM digest, agentidp.agentidp_verify_digest(digest.chain_id, digest.seq, digest.hash);
ROLLBACK;
-- A history rewritten and rehashed from event 10 on verifies as a chain, but not against it.
-- The attacker works in transactions of its own, and deletes the record of turning the guards
-- off with the history; turning the chain back on is recorded, at seq 10.
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
CREATE TEMP TABLE rewritten AS SELECT * FROM agentidp.audit_events
  WHERE seq >= 10 AND action <> 'agentidp.ddl' ORDER BY seq;
DELETE FROM agentidp.audit_events WHERE seq >= 10;
ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain;
SELECT seq, action, metadata->'subcommands' AS subcommands
  FROM agentidp.audit_events WHERE action = 'agentidp.ddl';
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome)
SELECT event_id, occurred_at, replace(action, 'event', 'rewritten'), outcome FROM rewritten ORDER BY seq;
SELECT * FROM agentidp.agentidp_verify_chain();
SELECT verified, break_kind, right(broken_at_event_id::text, 2) AS broken
  FROM digest, agentidp.agentidp_verify_digest(digest.chain_id, digest.seq, digest.hash);
SELECT verified FROM agentidp.agentidp_verify_digest('global', 1, '\x00');
-- Leave the database as found: a deliberate drop of a log that holds events.
SET agentidp.allow_drop = on;
DROP EXTENSION pg_agentidp;
RESET agentidp.allow_drop;
CREATE EXTENSION pg_agentidp;

BEGIN;
-- Incremental verification starts from the last checkpoint; a full walk stays available.
INSERT INTO agentidp.audit_events (action, outcome)
SELECT 'event.' || i, 'success' FROM generate_series(1, 10) i;
SELECT * FROM agentidp.agentidp_verify_incremental();
SELECT chain_id, seq FROM agentidp.chain_checkpoints;
INSERT INTO agentidp.audit_events (action, outcome)
SELECT 'event.' || i, 'success' FROM generate_series(11, 13) i;
SELECT * FROM agentidp.agentidp_verify_incremental();
SELECT chain_id, seq FROM agentidp.chain_checkpoints;
-- An edit behind the checkpoint escapes the incremental check, not the full walk.
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
UPDATE agentidp.audit_events SET outcome = 'failure' WHERE seq = 2;
SELECT verified, checked_count FROM agentidp.agentidp_verify_incremental();
SELECT verified, checked_count, break_kind FROM agentidp.agentidp_verify_incremental(full_walk => true);
-- A found break drops the checkpoint, so the next incremental run cannot pass by starting after it.
SELECT count(*) AS checkpoints FROM agentidp.chain_checkpoints;
SELECT verified, checked_count, break_kind FROM agentidp.agentidp_verify_incremental();
-- A rewritten checkpointed event is caught by the incremental check too.
UPDATE agentidp.audit_events SET outcome = 'success' WHERE seq = 2;
SELECT verified FROM agentidp.agentidp_verify_incremental();
UPDATE agentidp.audit_events SET hash = sha256('x')
 WHERE seq = (SELECT seq FROM agentidp.chain_checkpoints WHERE chain_id = 'global');
SELECT verified, checked_count, break_kind FROM agentidp.agentidp_verify_incremental();
ROLLBACK;
