-- The tamper matrix: every attack a superuser can make with the triggers disabled is found,
-- with the right first broken event and kind.
BEGIN;
INSERT INTO agentidp.audit_events (event_id, action, outcome)
SELECT ('00000000-0000-0000-0000-00000000000' || i)::uuid, 'event.' || i, 'success'
  FROM generate_series(1, 6) i;
CREATE TEMP VIEW verdict AS
SELECT v.verified, v.checked_count, v.break_kind, v.broken_chain_id,
       right(v.broken_at_event_id::text, 1) AS broken_event
  FROM agentidp.agentidp_verify_chain() v;
SELECT * FROM verdict;
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
-- The attacker removes the record of the line above as well (ddl_guard.sql tests the record).
DELETE FROM agentidp.audit_events WHERE action = 'agentidp.ddl';

SAVEPOINT intact;
-- An edited field.
UPDATE agentidp.audit_events SET outcome = 'failure' WHERE seq = 3;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A stored hash replaced.
UPDATE agentidp.audit_events SET hash = sha256('forged') WHERE seq = 3;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A deleted row in the middle.
DELETE FROM agentidp.audit_events WHERE seq = 4;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- Two events swapped.
UPDATE agentidp.audit_events SET seq = CASE seq WHEN 2 THEN 3 ELSE 2 END WHERE seq IN (2, 3);
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A forged event appended with a made-up hash.
INSERT INTO agentidp.audit_events (event_id, action, outcome, chain_id, seq, prev_hash, hash)
SELECT '00000000-0000-0000-0000-000000000007', 'forged', 'success', 'global', 7, hash, sha256('x')
  FROM agentidp.audit_events WHERE seq = 6;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A forged event numbered before the first.
INSERT INTO agentidp.audit_events (event_id, action, outcome, chain_id, seq, prev_hash, hash)
VALUES ('00000000-0000-0000-0000-000000000000', 'forged', 'success', 'global', 0,
        '\x0000000000000000000000000000000000000000000000000000000000000000', sha256('x'));
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A rewritten previous hash.
UPDATE agentidp.audit_events SET prev_hash = sha256('elsewhere') WHERE seq = 5;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- A hash cut short.
UPDATE agentidp.audit_events SET hash = substr(hash, 1, 16) WHERE seq = 2;
SELECT * FROM verdict;
ROLLBACK TO SAVEPOINT intact;

-- The forensic query of the runbook: the broken event and its neighbours.
UPDATE agentidp.audit_events SET action = 'event.changed' WHERE seq = 5;
SELECT e.seq, e.action, e.event_id = v.broken_at_event_id AS is_broken
  FROM agentidp.agentidp_verify_chain() v
  JOIN agentidp.audit_events b ON b.event_id = v.broken_at_event_id
  JOIN agentidp.audit_events e ON e.chain_id = b.chain_id AND e.seq BETWEEN b.seq - 1 AND b.seq + 1
 ORDER BY e.seq;
ROLLBACK;
