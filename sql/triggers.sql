-- pg_agentidp triggers: run after every generated function (pgrx `finalize`).

-- Declared by hand: it keeps per-statement state in fn_extra, which #[pg_trigger] does not expose.
CREATE FUNCTION agentidp_chain_trigger() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'agentidp_chain_trigger';

-- Named to sort last: BEFORE triggers fire in name order, and the hash must cover the row as it
-- will be stored, after any other BEFORE trigger has changed or cancelled it.
CREATE TRIGGER zz_agentidp_chain
    BEFORE INSERT ON audit_events
    FOR EACH ROW EXECUTE FUNCTION agentidp_chain_trigger();

CREATE TRIGGER agentidp_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION agentidp_append_only_guard();

CREATE TRIGGER agentidp_append_only_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION agentidp_append_only_guard();

-- ALWAYS: session_replication_role = replica (set by logical replication and by some bulk
-- loaders) skips ordinary triggers, and neither the chain nor the guards may be skipped.
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER zz_agentidp_chain;
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER agentidp_append_only;
ALTER TABLE audit_events ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;
