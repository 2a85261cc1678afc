-- The log is append-only for everyone, replication role or not.
BEGIN;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('a', 'success'), ('b', 'success');
SAVEPOINT s;
UPDATE agentidp.audit_events SET outcome = 'failure';
ROLLBACK TO SAVEPOINT s;
DELETE FROM agentidp.audit_events WHERE seq = 1;
ROLLBACK TO SAVEPOINT s;
TRUNCATE agentidp.audit_events;
ROLLBACK TO SAVEPOINT s;

-- session_replication_role = replica skips ordinary triggers; ours are ENABLE ALWAYS.
SET LOCAL session_replication_role = replica;
DELETE FROM agentidp.audit_events;
ROLLBACK TO SAVEPOINT s;
SET LOCAL session_replication_role = replica;
INSERT INTO agentidp.audit_events (action, outcome, hash) VALUES ('c', 'success', '\xdead');
SELECT seq, length(hash) FROM agentidp.audit_events ORDER BY seq;
SELECT tgname, tgenabled FROM pg_trigger
 WHERE tgrelid = 'agentidp.audit_events'::regclass AND NOT tgisinternal ORDER BY tgname;
ROLLBACK;
