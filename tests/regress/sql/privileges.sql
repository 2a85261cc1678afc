-- An application role needs the right to insert events and nothing more: the chain trigger reads
-- what it needs (heads, retention anchors) with the log owner's rights.
BEGIN;
CREATE ROLE agentidp_app;
GRANT USAGE ON SCHEMA agentidp TO agentidp_app;
GRANT INSERT ON agentidp.audit_events TO agentidp_app;
-- A chain with no events yet: its head comes from chain_anchors, which the role cannot read.
SELECT has_table_privilege('agentidp_app', 'agentidp.chain_anchors', 'SELECT');
SET agentidp.chain_scope = org;
SET ROLE agentidp_app;
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('agent.created', 'success', 'org-new');
INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES ('agent.created', 'success', 'org-new');
-- The switch to the owner ends with the insert.
SELECT current_user;
RESET ROLE;
SELECT chain_id, seq FROM agentidp.audit_events WHERE org_id = 'org-new' ORDER BY seq;
SELECT verified FROM agentidp.agentidp_verify_chain(NULL, NULL, 'org:org-new');

-- Keeping a dump's chain columns is a superuser's decision (tests/restore.sh covers a value set
-- before the library loads).
SET ROLE agentidp_app;
SAVEPOINT s;
SET agentidp.restoring = on;
ROLLBACK TO SAVEPOINT s;
RESET ROLE;
ROLLBACK;
