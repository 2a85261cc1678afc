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

-- sql/encryption.sql: key rotation in linear time (issue 13). 0.1.0's agentidp_reencrypt()
-- rescanned every column from its start in each batch and recounted every value, so a rotation
-- of n values cost n^2 / batch_size decryptions. Its batches now walk each table by primary key
-- from the position agentidp.reencryption_pass keeps, and count once a pass. The definitions
-- below are sql/encryption.sql's, word for word (tests/upgrade.sh compares the schemas).

-- Where a rotation's walk stands, between its committed batches: the column and the last key of
-- the pass under way (both NULL when none is). Written in each batch's own transaction, so a
-- batch that is killed leaves the position of the last one committed, and the next call goes on
-- from there. `target` is what the pass rewrites to (the ids of the configured keys, never the
-- keys, and the format): a call with other keys or another format starts a new pass. Never
-- deleted from: running a rotation needs SELECT, INSERT and UPDATE on it, as on the columns.
CREATE TABLE reencryption_pass (
    only_row      boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    target        text        NOT NULL,
    table_name    text,
    column_name   text        CHECK ((column_name IS NULL) = (table_name IS NULL)),
    last_key      text,
    remaining     bigint      NOT NULL CHECK (remaining >= 0),
    undecryptable bigint      NOT NULL CHECK (undecryptable >= 0),
    started_at    timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE reencryption_pass IS
  'The position of the agentidp_reencrypt() pass under way, if any (docs/encryption-runbook.md).';

-- One batch of a rotation: visits the next batch_size values of a walk of every sensitive column
-- in primary-key order, rewrites those among them that need it (plaintext, under an old key, or
-- in the format not configured) under the current key and format, and says how many are left.
-- Call it until remaining = 0, each call in its own transaction, or CALL agentidp_reencrypt_all().
--
-- Linear: a pass counts the values to rewrite once, at its start; each batch then reads only the
-- rows after the last key it left in agentidp.reencryption_pass (keyset pagination), and
-- remaining is that count less the values the pass has found to rewrite since. It is an estimate
-- while the pass goes on (concurrent writes under the new key shrink the real figure), never 0
-- before the walk has reached the end of the last column, and 0 once it has. The next call then
-- starts a new pass, which counts again: a value written under an old key behind the walk (by a
-- session without the new key) is found by it.
--
-- Resumable and idempotent: an interrupted run loses only its uncommitted batch, and its position
-- with it; the next call redoes that batch. No write is lost: the UPDATE rewrites a value only if
-- the row version it locks still holds the very value that was read and sealed anew, so a value
-- changed by a concurrent write is left as that write left it. Undecryptable values are left
-- alone and counted: they need the key they were written with in agentidp.encryption_old_keys.
-- Batches run one at a time (the lock on reencryption_pass); sessions with the same keys share
-- the walk.
CREATE OR REPLACE FUNCTION agentidp_reencrypt(batch_size integer DEFAULT 1000,
    OUT rewritten bigint, OUT remaining bigint, OUT undecryptable bigint)
LANGUAGE plpgsql VOLATILE CALLED ON NULL INPUT PARALLEL UNSAFE AS $fn$
DECLARE
    target text;
    p agentidp.reencryption_pass;
    c record;
    budget bigint;
    from_key text;
    after text;
    key_type text;
    visited bigint;
    found_here bigint;
    stop_key text;
    n bigint;
    left_here bigint;
    stuck_here bigint;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rewritten := 0;
    remaining := 0;
    undecryptable := 0;
    -- Self-conflicting, and not in the way of readers: a concurrent batch waits for this one to
    -- commit its position, then reads it.
    LOCK TABLE agentidp.reencryption_pass IN SHARE ROW EXCLUSIVE MODE;
    target := concat_ws('/',
        (SELECT string_agg(k.key_role || ':' || k.key_id, ',' ORDER BY k.key_role, k.position)
           FROM agentidp.agentidp_encryption_key_ids() k),
        current_setting('agentidp.encryption_format', true));
    SELECT * INTO p FROM agentidp.reencryption_pass;
    IF NOT FOUND OR p.target IS DISTINCT FROM target OR p.table_name IS NULL THEN
        -- A new pass: count, once, what it has to rewrite and what it cannot.
        FOR c IN SELECT * FROM agentidp.encrypted_columns ORDER BY 1, 2 LOOP
            EXECUTE format($q$
                SELECT count(*) FILTER (WHERE needs),
                       count(*) FILTER (WHERE NOT needs AND agentidp.agentidp_key_state(v, $1) = 'undecryptable')
                  FROM (SELECT %2$I AS v, agentidp.agentidp_needs_reencryption(%2$I, $1) AS needs
                          FROM agentidp.%1$I WHERE %2$I IS NOT NULL OFFSET 0) s$q$,
                c.table_name, c.column_name)
            INTO left_here, stuck_here USING c.context;
            remaining := remaining + left_here;
            undecryptable := undecryptable + stuck_here;
        END LOOP;
        IF remaining = 0 THEN
            UPDATE agentidp.reencryption_pass
               SET table_name = NULL, column_name = NULL, last_key = NULL, remaining = 0;
            RETURN;
        END IF;
        INSERT INTO agentidp.reencryption_pass (target, table_name, column_name, remaining, undecryptable)
        SELECT target, e.table_name, e.column_name, remaining, undecryptable
          FROM agentidp.encrypted_columns e ORDER BY 1, 2 LIMIT 1
        ON CONFLICT (only_row) DO UPDATE
           SET target = excluded.target, table_name = excluded.table_name,
               column_name = excluded.column_name, last_key = NULL, remaining = excluded.remaining,
               undecryptable = excluded.undecryptable, started_at = now()
        RETURNING * INTO p;
    END IF;

    -- The walk, from where the last batch left it: the columns in the census's order, each by its
    -- primary key.
    budget := batch_size;
    FOR c IN SELECT * FROM agentidp.encrypted_columns e
              WHERE (e.table_name, e.column_name) >= (p.table_name, p.column_name) ORDER BY 1, 2 LOOP
        from_key := CASE WHEN (c.table_name, c.column_name) = (p.table_name, p.column_name) THEN p.last_key END;
        SELECT format_type(a.atttypid, a.atttypmod) INTO key_type
          FROM pg_catalog.pg_attribute a
         WHERE a.attrelid = format('agentidp.%I', c.table_name)::regclass AND a.attname = c.key_column;
        after := CASE WHEN from_key IS NOT NULL THEN format('AND %I > $3::%s', c.key_column, key_type) ELSE '' END;
        -- visit: the next rows, read through the primary key's index from the last key on;
        -- found: those whose value needs rewriting (one decryption each); sealed: the rewrite,
        -- of the row version that still holds the value read (re-checked on the version the
        -- UPDATE locks when a concurrent write got there first).
        EXECUTE format($q$
            WITH visit AS MATERIALIZED (
                SELECT %3$I AS k, %2$I AS v FROM agentidp.%1$I
                 WHERE %2$I IS NOT NULL %4$s ORDER BY %3$I LIMIT $2),
            found AS MATERIALIZED (
                SELECT k, v FROM visit WHERE agentidp.agentidp_needs_reencryption(v, $1)),
            sealed AS (
                UPDATE agentidp.%1$I t SET %2$I = agentidp.agentidp_reencrypt_value(found.v, $1)
                  FROM found WHERE t.%3$I = found.k AND t.%2$I = found.v
                RETURNING 1)
            SELECT (SELECT count(*) FROM visit), (SELECT visit.k::text FROM visit ORDER BY visit.k DESC LIMIT 1),
                   (SELECT count(*) FROM found), (SELECT count(*) FROM sealed)$q$,
            c.table_name, c.column_name, c.key_column, after)
        INTO visited, stop_key, found_here, n USING c.context, budget, from_key;
        rewritten := rewritten + n;
        p.remaining := greatest(p.remaining - found_here, 0);
        IF visited = budget THEN
            -- The batch ends inside this column: the next one starts after its last key.
            UPDATE agentidp.reencryption_pass
               SET table_name = c.table_name, column_name = c.column_name, last_key = stop_key,
                   remaining = p.remaining;
            remaining := greatest(p.remaining, 1);
            undecryptable := p.undecryptable;
            RETURN;
        END IF;
        budget := budget - visited;
    END LOOP;
    -- The walk is at the end of the last column: the pass is done.
    UPDATE agentidp.reencryption_pass
       SET table_name = NULL, column_name = NULL, last_key = NULL, remaining = 0;
    remaining := 0;
    undecryptable := p.undecryptable;
END
$fn$;

-- The whole rotation, one committed transaction per batch: locks are held for one batch only,
-- and an interruption keeps every batch committed before it. CALL it outside a transaction block.
-- No SET clause: a procedure with one cannot COMMIT. Ends: each batch moves the walk on, and
-- remaining is 0 once the walk has reached the end.
CREATE OR REPLACE PROCEDURE agentidp_reencrypt_all(batch_size integer DEFAULT 1000)
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    total bigint := 0;
BEGIN
    LOOP
        SELECT * INTO r FROM agentidp.agentidp_reencrypt(batch_size);
        total := total + r.rewritten;
        COMMIT;
        RAISE NOTICE 'agentidp_reencrypt_all: % values rewritten, % remaining', total, r.remaining;
        EXIT WHEN r.remaining = 0;
    END LOOP;
    IF r.undecryptable > 0 THEN
        RAISE WARNING 'agentidp_reencrypt_all: % values decrypt under none of the configured keys and were left as they are', r.undecryptable
            USING HINT = 'Find them with agentidp.agentidp_key_state(); see docs/encryption-runbook.md.';
    END IF;
END
$fn$;

-- ---------------------------------------------------------------------------------------------
-- sql/schema.sql: the sidecar's rate-limit windows, shared by its replicas (issue 13). As in
-- sql/schema.sql, word for word; UNLOGGED and not registered with pg_extension_config_dump.
-- After the update, grant the sidecar's role its rights on it (sidecar/README.md, "HTTP"):
--   GRANT SELECT, INSERT, UPDATE, DELETE ON agentidp.api_rate_windows TO agentidp;
CREATE UNLOGGED TABLE api_rate_windows (
    route      text        NOT NULL,
    client_id  text        NOT NULL,
    window_end timestamptz NOT NULL,
    count      integer     NOT NULL CHECK (count >= 0),
    PRIMARY KEY (route, client_id)
);
COMMENT ON TABLE api_rate_windows IS
  'Fixed rate-limit windows of the sidecar, per route and client, shared by its replicas.';

-- ---------------------------------------------------------------------------------------------
-- sql/transparency.sql: the Merkle trees, their tiles, signed checkpoints and refusals
-- (issue 14), word for word, then the functions over them as the build generates them.
-- The audit log as a transparency log (docs/audit-log-runbook.md, "Signed checkpoints"): each
-- chain is an RFC 9162 Merkle tree over its events' stored hashes, which agentidp_seal() grows
-- off the insert path and keeps as C2SP tlog-tiles; the sidecar signs its heads as C2SP
-- checkpoints with a key the database never holds, and files them here.

-- Each chain's sealed tree. head_hash is the stored hash of its last leaf's event, which every
-- later seal must find unchanged: a rewrite of sealed history, rehashed so that the chain alone
-- verifies, changes it.
CREATE TABLE merkle_trees (
    chain_id   text        PRIMARY KEY,
    tree_size  bigint      NOT NULL CHECK (tree_size > 0),
    root       bytea       NOT NULL CHECK (length(root) = 32),
    head_hash  bytea       NOT NULL CHECK (length(head_hash) = 32),
    sealed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE merkle_trees IS
  'The sealed Merkle tree of each audit chain: size, root, and the hash of its last event.';

-- Tiles of height 8 (C2SP tlog-tiles): up to 256 hashes at tree level 8 * level. A full tile
-- never changes; the rightmost of a level is kept at its current width, and any narrower tile a
-- proof for an older size needs is a prefix of it. Kept when events are archived, so proofs for
-- every event stay available.
CREATE TABLE merkle_tiles (
    chain_id text     NOT NULL,
    level    smallint NOT NULL CHECK (level BETWEEN 0 AND 7),
    idx      bigint   NOT NULL CHECK (idx >= 0),
    hashes   bytea    NOT NULL CHECK (length(hashes) BETWEEN 32 AND 8192 AND length(hashes) % 32 = 0),
    PRIMARY KEY (chain_id, level, idx)
);
-- SHA-256 output does not compress: skip the attempt, store out of line at once.
ALTER TABLE merkle_tiles ALTER hashes SET STORAGE EXTERNAL;
COMMENT ON TABLE merkle_tiles IS
  'C2SP tlog-tiles of each audit chain''s Merkle tree; a tile only ever grows.';

-- An inclusion proof starts from an event id, archived events included.
CREATE INDEX audit_events_archive_event_id_idx ON audit_events_archive (event_id);

-- Signed checkpoints (C2SP tlog-checkpoint notes), as the sidecar filed them, with the witnesses'
-- cosignature lines as they came back.
CREATE TABLE checkpoints (
    chain_id     text        NOT NULL,
    tree_size    bigint      NOT NULL CHECK (tree_size > 0),
    root         bytea       NOT NULL CHECK (length(root) = 32),
    note         text        NOT NULL,
    signed_at    timestamptz NOT NULL DEFAULT now(),
    cosignatures text[]      NOT NULL DEFAULT '{}',
    PRIMARY KEY (chain_id, tree_size)
);
COMMENT ON TABLE checkpoints IS
  'Signed checkpoints of each audit chain''s tree; append-only, cosignatures only added.';

-- Evidence kept when a seal or a signature was refused: the tree head the sealer had committed
-- to, and the one the log gives now.
CREATE TABLE checkpoint_refusals (
    refusal_id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    chain_id            text        NOT NULL,
    reason              text        NOT NULL CHECK (reason IN ('rewritten', 'inconsistent')),
    trusted_size        bigint      NOT NULL,
    trusted_root        bytea       NOT NULL CHECK (length(trusted_root) = 32),
    observed_size       bigint      NOT NULL,
    observed_root       bytea       NOT NULL CHECK (length(observed_root) = 32),
    first_rewritten_seq bigint,
    first_rewritten_event_id uuid,
    detected_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (chain_id, reason, trusted_size, observed_size, observed_root)
);
COMMENT ON TABLE checkpoint_refusals IS
  'Evidence of refused seals and signatures: the trusted tree head and the one observed.';

-- The guards. Nothing is deleted from these tables, and an update may only grow a tile or add
-- cosignatures. ENABLE ALWAYS, as for the log: session_replication_role must not skip them.
CREATE FUNCTION agentidp_transparency_guard() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog
AS $$
BEGIN
    -- One table per branch: PL/pgSQL resolves NEW's fields only for the table it fired on.
    IF TG_OP = 'UPDATE' THEN
        CASE TG_TABLE_NAME
        WHEN 'merkle_tiles' THEN
            IF (NEW.chain_id, NEW.level, NEW.idx) = (OLD.chain_id, OLD.level, OLD.idx)
               AND length(NEW.hashes) > length(OLD.hashes)
               AND substring(NEW.hashes FROM 1 FOR length(OLD.hashes)) = OLD.hashes THEN
                RETURN NEW;
            END IF;
        WHEN 'merkle_trees' THEN
            IF NEW.chain_id = OLD.chain_id AND NEW.tree_size > OLD.tree_size THEN
                RETURN NEW;
            END IF;
        WHEN 'checkpoints' THEN
            IF (NEW.chain_id, NEW.tree_size, NEW.root, NEW.note, NEW.signed_at)
               = (OLD.chain_id, OLD.tree_size, OLD.root, OLD.note, OLD.signed_at)
               AND NEW.cosignatures[1:cardinality(OLD.cosignatures)] IS NOT DISTINCT FROM OLD.cosignatures[1:cardinality(OLD.cosignatures)]
               AND cardinality(NEW.cosignatures) >= cardinality(OLD.cosignatures) THEN
                RETURN NEW;
            END IF;
        ELSE
        END CASE;
    END IF;
    RAISE EXCEPTION 'agentidp.% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = CASE TG_TABLE_NAME
                  WHEN 'merkle_tiles' THEN 'A tile only grows; agentidp_seal() writes them.'
                  WHEN 'merkle_trees' THEN 'A tree only grows; agentidp_seal() writes them.'
                  WHEN 'checkpoints' THEN 'A checkpoint only gains cosignatures.'
                  ELSE 'Refusals are evidence; see docs/audit-log-runbook.md.' END;
END
$$;

CREATE TRIGGER agentidp_append_only BEFORE UPDATE OR DELETE ON merkle_trees
    FOR EACH ROW EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only BEFORE UPDATE OR DELETE ON merkle_tiles
    FOR EACH ROW EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only BEFORE UPDATE OR DELETE ON checkpoint_refusals
    FOR EACH ROW EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only_truncate BEFORE TRUNCATE ON merkle_trees
    FOR EACH STATEMENT EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only_truncate BEFORE TRUNCATE ON merkle_tiles
    FOR EACH STATEMENT EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only_truncate BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION agentidp_transparency_guard();
CREATE TRIGGER agentidp_append_only_truncate BEFORE TRUNCATE ON checkpoint_refusals
    FOR EACH STATEMENT EXECUTE FUNCTION agentidp_transparency_guard();
ALTER TABLE merkle_trees ENABLE ALWAYS TRIGGER agentidp_append_only;
ALTER TABLE merkle_tiles ENABLE ALWAYS TRIGGER agentidp_append_only;
ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER agentidp_append_only;
ALTER TABLE checkpoint_refusals ENABLE ALWAYS TRIGGER agentidp_append_only;
ALTER TABLE merkle_trees ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;
ALTER TABLE merkle_tiles ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;
ALTER TABLE checkpoints ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;
ALTER TABLE checkpoint_refusals ENABLE ALWAYS TRIGGER agentidp_append_only_truncate;

SELECT pg_catalog.pg_extension_config_dump('merkle_trees', '');
SELECT pg_catalog.pg_extension_config_dump('merkle_tiles', '');
SELECT pg_catalog.pg_extension_config_dump('checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('checkpoint_refusals', '');
SELECT pg_catalog.pg_extension_config_dump('checkpoint_refusals_refusal_id_seq', '');

CREATE  FUNCTION "agentidp_seal"() RETURNS TABLE (
	"chain_id" TEXT,  /* String */
	"status" TEXT,  /* & '_ str */
	"tree_size" bigint,  /* i64 */
	"root" bytea,  /* Vec < u8 > */
	"sealed_count" bigint,  /* i64 */
	"detail" TEXT  /* Option < String > */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_seal_wrapper';

CREATE  FUNCTION "agentidp_inclusion_proof"(
	"event_id" uuid, /* Uuid */
	"tree_size" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS TABLE (
	"chain_id" TEXT,  /* String */
	"seq" bigint,  /* i64 */
	"leaf_index" bigint,  /* i64 */
	"tree_size" bigint,  /* i64 */
	"root" bytea,  /* Vec < u8 > */
	"proof" bytea[],  /* Vec < Vec < u8 > > */
	"checkpoint" TEXT  /* String */
)
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_inclusion_proof_wrapper';

CREATE  FUNCTION "agentidp_consistency_proof"(
	"chain_id" TEXT, /* & str */
	"old_size" bigint, /* i64 */
	"new_size" bigint /* i64 */
) RETURNS bytea[] /* Vec < Vec < u8 > > */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_consistency_proof_wrapper';

CREATE  FUNCTION "agentidp_record_checkpoint"(
	"note" TEXT /* & str */
) RETURNS TABLE (
	"chain_id" TEXT,  /* String */
	"tree_size" bigint,  /* i64 */
	"root" bytea  /* Vec < u8 > */
)
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_record_checkpoint_wrapper';

CREATE  FUNCTION "agentidp_export"(
	"chain_id" TEXT, /* Option < & str > */
	"from_seq" bigint DEFAULT 1, /* Option < i64 > */
	"to_seq" bigint DEFAULT NULL /* Option < i64 > */
) RETURNS SETOF TEXT /* String */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_export_wrapper';

-- ---------------------------------------------------------------------------------------------
-- Scaling out on Citus (issue 15): the chain an org's events join, which an INSERT on a
-- distributed log names for Citus to route it by, and sql/citus.sql, word for word.
CREATE  FUNCTION "agentidp_chain_of"(
	"org_id" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_chain_of_wrapper';

-- Retention on a distributed log: agentidp_archive_events() on the coordinator has each worker
-- archive the chains of its shards with this, in the worker's own backend.
CREATE  FUNCTION "agentidp_archive_shard"(
	"shard" TEXT, /* & str */
	"older_than" timestamp with time zone, /* TimestampWithTimeZone */
	"chain" TEXT /* Option < & str > */
) RETURNS TEXT /* String */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'agentidp_archive_shard_wrapper';

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
