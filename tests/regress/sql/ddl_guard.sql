-- The log is protected from DDL: a drop that would destroy it is refused while it holds events,
-- and every change to its protection is appended to the chain as an agentidp.ddl event.
BEGIN;
CREATE ROLE agentidp_ddl_tester;
-- An empty log may go.
SAVEPOINT empty;
DROP EXTENSION pg_agentidp;
ROLLBACK TO SAVEPOINT empty;

INSERT INTO agentidp.audit_events (action, outcome) VALUES ('agent.created', 'success');
SAVEPOINT held;
DROP EXTENSION pg_agentidp;
ROLLBACK TO SAVEPOINT held;
DROP EXTENSION pg_agentidp CASCADE;
ROLLBACK TO SAVEPOINT held;
DROP EXTENSION IF EXISTS pg_stat_statements, pg_agentidp CASCADE;
ROLLBACK TO SAVEPOINT held;
DROP SCHEMA agentidp CASCADE;
ROLLBACK TO SAVEPOINT held;
DROP TABLE agentidp.audit_events CASCADE;
ROLLBACK TO SAVEPOINT held;
DROP TABLE agentidp.audit_events_archive;
ROLLBACK TO SAVEPOINT held;
DROP TABLE agentidp.chain_checkpoints;
ROLLBACK TO SAVEPOINT held;
SET LOCAL search_path = agentidp, public;
DROP TABLE IF EXISTS no_such_table, chain_anchors;
ROLLBACK TO SAVEPOINT held;
ALTER EXTENSION pg_agentidp DROP TABLE agentidp.chain_anchors;
ROLLBACK TO SAVEPOINT held;
ALTER EXTENSION pg_agentidp DROP EVENT TRIGGER agentidp_ddl_start;
ROLLBACK TO SAVEPOINT held;
-- The archive holds events too.
SET LOCAL agentidp.allow_drop = on;
ALTER EXTENSION pg_agentidp DROP TABLE agentidp.audit_events_archive;
RESET agentidp.allow_drop;
ROLLBACK TO SAVEPOINT held;
-- What is not the log's is not in the way.
CREATE TABLE public.audit_events (id int);
DROP TABLE public.audit_events;
CREATE SCHEMA agentidp_other;
DROP SCHEMA agentidp_other CASCADE;

-- The setting is a superuser's, for one session.
SET ROLE agentidp_ddl_tester;
SET agentidp.allow_drop = on;
ROLLBACK TO SAVEPOINT held;
ALTER ROLE agentidp_ddl_tester SET agentidp.allow_drop = on;
ROLLBACK TO SAVEPOINT held;
ALTER DATABASE agentidp_regress SET agentidp.allow_drop = on;
ROLLBACK TO SAVEPOINT held;
CREATE FUNCTION public.drop_it() RETURNS void LANGUAGE sql SET agentidp.allow_drop = on AS 'SELECT';
ROLLBACK TO SAVEPOINT held;

-- The deliberate drop.
SET agentidp.allow_drop = on;
DROP EXTENSION pg_agentidp CASCADE;
SELECT count(*) AS extensions FROM pg_extension WHERE extname = 'pg_agentidp';
RESET agentidp.allow_drop;
ROLLBACK;

-- The trail: turning the guards off, tampering, turning them back on.
BEGIN;
CREATE TEMP VIEW trail AS
SELECT seq, metadata->>'command_tag' AS tag, metadata->>'object_identity' AS object,
       metadata->'subcommands' AS subcommands, metadata->>'role' AS role,
       metadata->>'application_name' AS application
  FROM agentidp.audit_events WHERE action = 'agentidp.ddl' ORDER BY seq;
INSERT INTO agentidp.audit_events (action, outcome)
SELECT 'event.' || i, 'success' FROM generate_series(1, 3) i;
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
UPDATE agentidp.audit_events SET outcome = 'failure' WHERE seq = 2;
ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain;
ALTER TABLE agentidp.audit_events ENABLE ALWAYS TRIGGER agentidp_append_only,
  ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;
SELECT * FROM trail;
-- The records are chained like any event: the edit is found, after them nothing is broken.
SELECT verified, break_kind, checked_count FROM agentidp.agentidp_verify_chain();
ROLLBACK;

BEGIN;
CREATE TEMP VIEW trail AS
SELECT seq, metadata->>'command_tag' AS tag, metadata->>'object_type' AS type,
       metadata->>'object_identity' AS object, metadata->'subcommands' AS subcommands
  FROM agentidp.audit_events WHERE action = 'agentidp.ddl' ORDER BY seq;
ALTER TABLE agentidp.audit_events ALTER COLUMN metadata SET DEFAULT '{}';
ALTER TABLE agentidp.chain_anchors ADD COLUMN note text;
CREATE RULE audit_events_drop AS ON INSERT TO agentidp.audit_events
  WHERE NEW.action = 'x' DO INSTEAD NOTHING;
ALTER TRIGGER agentidp_append_only ON agentidp.audit_events RENAME TO a_guard;
DROP TRIGGER agentidp_append_only_truncate ON agentidp.audit_events;
CREATE TRIGGER agentidp_extra BEFORE UPDATE ON agentidp.audit_events
  FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger();
DROP TRIGGER agentidp_extra ON agentidp.audit_events;
ALTER FUNCTION agentidp.agentidp_chain_heads SET work_mem = '64MB';
ALTER EXTENSION pg_agentidp UPDATE;
-- Nothing else is recorded.
CREATE TABLE public.other (id int);
ALTER TABLE public.other DISABLE TRIGGER ALL;
DROP TABLE public.other;
CREATE FUNCTION public.agentidp_chain_trigger() RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE OR REPLACE FUNCTION public.agentidp_chain_trigger() RETURNS int LANGUAGE sql AS 'SELECT 2';
-- Replacing the chain function turns the chain off: recorded before, and what follows cannot be.
CREATE OR REPLACE FUNCTION agentidp.agentidp_chain_trigger() RETURNS trigger
  LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
ALTER TABLE agentidp.audit_events ALTER COLUMN metadata DROP DEFAULT;
SELECT * FROM trail;
SELECT verified, checked_count FROM agentidp.agentidp_verify_chain();
ROLLBACK;
