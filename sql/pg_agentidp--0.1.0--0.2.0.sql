-- pg_agentidp 0.1.0 -> 0.2.0

-- sql/ddl_guard.sql: drop protection and the trail of changes to the log's protection.
-- Declared by hand: pgrx has no macro for event-trigger functions.
CREATE FUNCTION agentidp_ddl_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'agentidp_ddl_guard';

-- At the start: the drops are refused before anything is gone, and a change that turns the chain
-- off is recorded while the chain still fires.
CREATE EVENT TRIGGER agentidp_ddl_start ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP SCHEMA', 'DROP TABLE', 'ALTER EXTENSION', 'ALTER TABLE',
                 'CREATE TRIGGER', 'ALTER TRIGGER', 'DROP TRIGGER', 'CREATE RULE', 'DROP RULE',
                 'CREATE FUNCTION', 'ALTER FUNCTION')
    EXECUTE FUNCTION agentidp_ddl_guard();

-- At the end: a change that turned the chain back on, and ALTER EXTENSION ... UPDATE, whose
-- script may have created these triggers.
CREATE EVENT TRIGGER agentidp_ddl_end ON ddl_command_end
    WHEN TAG IN ('ALTER EXTENSION', 'ALTER TABLE', 'CREATE TRIGGER', 'ALTER TRIGGER',
                 'DROP TRIGGER', 'CREATE RULE', 'DROP RULE', 'CREATE FUNCTION', 'ALTER FUNCTION')
    EXECUTE FUNCTION agentidp_ddl_guard();

-- Release 0.1.0 has no event trigger to see this very ALTER EXTENSION, and one created by this
-- script does not fire for it: record the update here, in the shape agentidp_ddl_guard() writes,
-- so the chain shows when protection changed. Later updates are recorded by agentidp_ddl_start.
INSERT INTO audit_events (action, outcome, metadata)
VALUES ('agentidp.ddl', 'success', jsonb_build_object(
    'command_tag', 'ALTER EXTENSION', 'object_type', 'extension', 'object_identity', 'pg_agentidp',
    'subcommands', jsonb_build_array('UPDATE TO 0.2.0'),
    'role', current_user, 'session_user', session_user,
    'application_name', current_setting('application_name')));
