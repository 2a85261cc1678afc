-- The chain trigger: every insert, from any client, gains its place and hash.
BEGIN;

-- The runbook's worked vector (docs/audit-log-runbook.md): the first event of the global chain.
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome, agent_id, org_id)
VALUES ('0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2', '2026-03-31 00:00:00.123456+00',
        'agent.token.issued', 'success', 'agent-42', 'org-7');
SELECT chain_id, seq, encode(prev_hash, 'hex') AS prev_hash, encode(hash, 'hex') AS hash
  FROM agentidp.audit_events;

-- Client-supplied chain columns are overwritten, never trusted.
INSERT INTO agentidp.audit_events (action, outcome, chain_id, seq, prev_hash, hash)
VALUES ('agent.login', 'success', 'forged', 42, '\x00', '\x01');
SELECT chain_id, seq, length(hash) AS hash_len,
       prev_hash = (SELECT hash FROM agentidp.audit_events WHERE seq = 1) AS linked
  FROM agentidp.audit_events WHERE seq = 2;

-- NULL and the empty string hash differently.
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome, agent_id)
VALUES ('00000000-0000-0000-0000-00000000000a', '2026-01-01Z', 'x', 'y', NULL),
       ('00000000-0000-0000-0000-00000000000b', '2026-01-01Z', 'x', 'y', '');
SELECT count(DISTINCT substr(hash, 1, 32)) = 2 AS distinct_hashes
  FROM agentidp.audit_events WHERE seq IN (3, 4);

-- A savepoint rolled back leaves no gap.
SAVEPOINT s;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('doomed', 'success');
ROLLBACK TO SAVEPOINT s;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('kept', 'success');
SELECT seq, action FROM agentidp.audit_events WHERE seq >= 4 ORDER BY seq;

-- A released savepoint keeps its rows.
SAVEPOINT t;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('released', 'success');
RELEASE SAVEPOINT t;
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after release', 'success');
SELECT seq, action FROM agentidp.audit_events WHERE seq >= 6 ORDER BY seq;

-- INSERT ... SELECT and COPY chain in order.
INSERT INTO agentidp.audit_events (action, outcome)
SELECT 'bulk.' || i, 'success' FROM generate_series(1, 1000) i;
COPY agentidp.audit_events (action, outcome, agent_id) FROM STDIN;
copy.1	success	agent-1
copy.2	failure	\N
\.
SELECT count(*), max(seq), min(seq) FROM agentidp.audit_events;
SELECT * FROM agentidp.agentidp_verify_chain();

-- ON CONFLICT DO NOTHING could skip a row after it took a chain position, leaving a gap; the
-- constraints are DEFERRABLE so that it has no arbiter and refuses instead.
INSERT INTO agentidp.audit_events (event_id, action, outcome)
VALUES ('0b7e5c1a-2d3f-4e5a-8b9c-adbecfd0e1f2', 'dup', 'success') ON CONFLICT DO NOTHING;
ROLLBACK;

BEGIN;
-- Bad input gets a clear error.
INSERT INTO agentidp.audit_events (occurred_at, action, outcome) VALUES ('infinity', 'a', 'b');
ROLLBACK;

BEGIN;
-- Per-org chains: unrelated orgs never share a chain; events without an org stay global.
SET LOCAL agentidp.chain_scope = 'org';
INSERT INTO agentidp.audit_events (action, outcome, org_id)
VALUES ('a', 'success', 'acme'), ('b', 'success', 'globex'), ('c', 'success', 'acme'),
       ('d', 'success', NULL);
SELECT chain_id, seq, action FROM agentidp.audit_events ORDER BY chain_id, seq;
SELECT * FROM agentidp.agentidp_verify_chain();
SELECT * FROM agentidp.agentidp_verify_chain(chain => 'org:acme');
SELECT chain_id, seq FROM agentidp.agentidp_chain_heads() ORDER BY chain_id;
ROLLBACK;

BEGIN;
-- Nested savepoints: a rollback returns every chain to where it stood, a chain first appended
-- to inside it is forgotten, and a released savepoint's rows go with its parent's rollback.
SET LOCAL agentidp.chain_scope = 'org';
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('1', 'success', 'acme');
SAVEPOINT a;
INSERT INTO agentidp.audit_events (action, outcome, org_id)
VALUES ('2', 'success', 'acme'), ('3', 'success', 'globex');
SAVEPOINT b;
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('4', 'success', 'acme');
SAVEPOINT c;
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('5', 'success', 'globex');
RELEASE SAVEPOINT c;
ROLLBACK TO SAVEPOINT b;
INSERT INTO agentidp.audit_events (action, outcome, org_id)
VALUES ('6', 'success', 'acme'), ('7', 'success', 'globex');
SELECT chain_id, seq, action FROM agentidp.audit_events ORDER BY chain_id, seq;
ROLLBACK TO SAVEPOINT a;
INSERT INTO agentidp.audit_events (action, outcome, org_id)
VALUES ('8', 'success', 'globex'), ('9', 'success', 'acme');
SELECT chain_id, seq, action FROM agentidp.audit_events ORDER BY chain_id, seq;
SELECT * FROM agentidp.agentidp_verify_chain();
ROLLBACK;

BEGIN;
-- An empty org_id is "no org", like NULL: it joins the global chain, not a chain named 'org:'.
SET LOCAL agentidp.chain_scope = 'org';
INSERT INTO agentidp.audit_events (action, outcome, org_id)
VALUES ('a', 'success', NULL), ('b', 'success', ''), ('c', 'success', 'acme');
SELECT chain_id, seq, action, quote_nullable(org_id) AS org_id
  FROM agentidp.audit_events ORDER BY chain_id, seq;
SELECT * FROM agentidp.agentidp_verify_chain();
SELECT count(*) AS empty_org_chains FROM agentidp.audit_events WHERE chain_id = 'org:';
ROLLBACK;

-- The scope decides which chain a row proves its place in: not a session's choice.
CREATE ROLE agentidp_regress_app;
SET ROLE agentidp_regress_app;
SET agentidp.chain_scope = 'org';
RESET ROLE;
DROP ROLE agentidp_regress_app;
