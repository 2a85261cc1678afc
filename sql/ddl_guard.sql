-- The audit log's protection against DDL (pg_agentidp/src/ddl_guard.rs): drops that would
-- destroy the log are refused while it holds events, and every change to its protection is
-- appended to the chain as an agentidp.ddl event. Event triggers see neither ALTER EVENT TRIGGER
-- nor direct catalog writes; docs/audit-log-runbook.md lists what they miss and the mitigations.

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
