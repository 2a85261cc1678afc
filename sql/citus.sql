-- Distributing the audit log with Citus (docs/scaling.md, "Distributing the log").
--
-- By chain_id: a chain then lives whole in one shard, so its head, its lock and its numbering stay
-- on one node, as on a single one. The per-chain tables (archive, anchors, verification and
-- signed checkpoints, trees, tiles, refusals) are distributed by chain_id too, co-located with the
-- log: a chain's rows of every table share one node. The tables with encrypted columns
-- (credentials, webhook subscriptions, agent keys) become reference tables: small, written
-- rarely, read by id, and on every node, where the column triggers of each placement encrypt
-- with the key the session passes on in its startup options (pg_agentidp/src/worker_options.rs).
-- The sidecar's own tables (control status, rate windows, dead letters, the rotation's position)
-- stay local on the coordinator: the sidecar alone writes and reads them, and talks to the
-- coordinator only; as reference tables every write (a rate window takes one per request) would
-- be copied to every node in a two-phase commit for readers that never come.
--
-- Run once, on the coordinator, as the extension's owner, with every node set up as
-- docs/scaling.md says (agentidp.chain_scope = 'org', citus.enable_change_data_capture = on).
CREATE FUNCTION agentidp_distribute() RETURNS void
    LANGUAGE plpgsql VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    misconfigured text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'agentidp_distribute() needs the citus extension in this database'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'CREATE EXTENSION citus on every node first (docs/scaling.md).';
    END IF;
    -- Each node's own settings count: the chain trigger runs on the workers, and Citus passes no
    -- SET of the coordinator's session on to them.
    SELECT string_agg(format('%s:%s (%s)', nodename, nodeport, result), ', ' ORDER BY nodeport)
      INTO misconfigured
      FROM (SELECT 'coordinator'::text AS nodename, 0 AS nodeport,
                   current_setting('agentidp.chain_scope') || ', '
                   || current_setting('citus.enable_change_data_capture') AS result
            UNION ALL
            SELECT nodename, nodeport, result
              FROM run_command_on_workers($cmd$SELECT current_setting('agentidp.chain_scope')
                     || ', ' || current_setting('citus.enable_change_data_capture')$cmd$)) AS node
     WHERE result IS DISTINCT FROM 'org, on';
    IF misconfigured IS NOT NULL THEN
        RAISE EXCEPTION 'cannot distribute the audit log: every node needs agentidp.chain_scope = ''org'' and citus.enable_change_data_capture = on; these have other settings: %', misconfigured
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'The global scope''s one chain cannot span shards, and without change data capture a shard move would chain its rows anew. ALTER SYSTEM SET both on every node and SELECT pg_reload_conf() (docs/scaling.md).';
    END IF;

    IF EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'agentidp.audit_events'::regclass) THEN
        RAISE EXCEPTION 'agentidp.audit_events is distributed already'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    -- Citus requires every unique constraint to include the distribution column. The event id
    -- stays unique by being a random UUID, and indexed for the lookups by it.
    ALTER TABLE agentidp.audit_events DROP CONSTRAINT audit_events_event_id_key;
    CREATE INDEX audit_events_event_id_idx ON agentidp.audit_events (event_id);
    ALTER TABLE agentidp.checkpoint_refusals DROP CONSTRAINT checkpoint_refusals_pkey,
        ADD PRIMARY KEY (chain_id, refusal_id);
    -- Shard moves and splits catch up by logical replication, which needs a replica identity, and
    -- a DEFERRABLE primary key cannot be one. FULL costs nothing here: it only adds to the WAL of
    -- UPDATE and DELETE, which the log refuses.
    ALTER TABLE agentidp.audit_events REPLICA IDENTITY FULL;
    -- A local table may reference a reference table only once Citus has added it to its
    -- metadata, and that fails for the dead letters: it would drop their identity sequence, which
    -- the extension owns. So the dead letters keep a subscription's id without the key (a deleted
    -- subscription's dead letters keep its id instead of NULL).
    ALTER TABLE agentidp.webhook_dead_letters
        DROP CONSTRAINT webhook_dead_letters_subscription_id_fkey;

    -- The triggers run on the shards, on the node that holds each chain; the chain trigger checks
    -- there that Citus routed each row by its own chain.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);
    PERFORM create_distributed_table('agentidp.audit_events', 'chain_id');
    PERFORM create_distributed_table(t::regclass, 'chain_id', colocate_with => 'agentidp.audit_events')
       FROM unnest(ARRAY['agentidp.audit_events_archive', 'agentidp.chain_anchors',
                         'agentidp.chain_checkpoints', 'agentidp.merkle_trees',
                         'agentidp.merkle_tiles', 'agentidp.checkpoints',
                         'agentidp.checkpoint_refusals']) AS t;
    PERFORM create_reference_table(t::regclass)
       FROM unnest(ARRAY['agentidp.credentials', 'agentidp.webhook_subscriptions',
                         'agentidp.agent_did_keys']) AS t;
END
$$;
COMMENT ON FUNCTION agentidp_distribute() IS
  'Distributes the audit log and its per-chain tables by chain_id with Citus (docs/scaling.md).';
REVOKE ALL ON FUNCTION agentidp_distribute() FROM PUBLIC;
