-- pg_agentidp column encryption: the sensitive columns, their triggers, the census and the
-- re-encryption batches. Runs after the Rust functions it calls (`requires` in lib.rs).

-- The inventory: every column that must never hold plaintext, and the context v2 values of it are
-- bound to. The triggers below cover exactly these (tests/regress/sql/encryption_triggers.sql
-- checks that they agree).
CREATE VIEW encrypted_columns (table_name, column_name, key_column, context) AS VALUES
    ('agent_did_keys'::text, 'vault_key_path'::text, 'key_id'::text, 'agentidp.agent_did_keys.vault_key_path'::text),
    ('credentials', 'secret_hash', 'credential_id', 'agentidp.credentials.secret_hash'),
    ('credentials', 'vault_path', 'credential_id', 'agentidp.credentials.vault_path'),
    ('webhook_subscriptions', 'vault_secret_path', 'subscription_id', 'agentidp.webhook_subscriptions.vault_secret_path');
COMMENT ON VIEW encrypted_columns IS
  'The columns encrypted at rest by agentidp_encrypt_columns (docs/encryption-runbook.md).';

-- Named to sort last among BEFORE triggers, which fire in name order: what is stored is the value
-- after every other trigger has had its say. UPDATE OF: an update that leaves these columns alone
-- neither needs the key nor re-checks them; agentidp_reencrypt() converts rows in place.
CREATE TRIGGER zz_agentidp_encrypt
    BEFORE INSERT OR UPDATE OF secret_hash, vault_path ON credentials
    FOR EACH ROW EXECUTE FUNCTION agentidp_encrypt_columns('secret_hash', 'vault_path');
CREATE TRIGGER zz_agentidp_encrypt
    BEFORE INSERT OR UPDATE OF vault_secret_path ON webhook_subscriptions
    FOR EACH ROW EXECUTE FUNCTION agentidp_encrypt_columns('vault_secret_path');
CREATE TRIGGER zz_agentidp_encrypt
    BEFORE INSERT OR UPDATE OF vault_key_path ON agent_did_keys
    FOR EACH ROW EXECUTE FUNCTION agentidp_encrypt_columns('vault_key_path');

-- ALWAYS: session_replication_role = replica (logical replication, some bulk loaders) skips
-- ordinary triggers, and plaintext must not get in that way. Already-encrypted values pass
-- without a key, so replicating or restoring encrypted rows needs none.
ALTER TABLE credentials ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
ALTER TABLE webhook_subscriptions ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
ALTER TABLE agent_did_keys ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;

-- The census, one row per sensitive column: the CC6.1 check is
--   SELECT sum(plaintext) = 0 FROM agentidp.agentidp_encryption_status();
-- Decrypts every value (a v2 value thereby proves its integrity). Without a key, the counts that
-- need one (current_key, old_key, undecryptable) are NULL; total, plaintext and the formats are not.
CREATE FUNCTION agentidp_encryption_status()
RETURNS TABLE (table_name text, column_name text, total bigint, current_key bigint,
               old_key bigint, plaintext bigint, undecryptable bigint,
               cbc_format bigint, gcm_format bigint)
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT * FROM agentidp.encrypted_columns ORDER BY 1, 2 LOOP
        RETURN QUERY EXECUTE format($q$
            SELECT %1$L::text, %2$L::text, count(*),
                   CASE WHEN count(*) FILTER (WHERE s IS NULL) = 0 THEN count(*) FILTER (WHERE s = 'current') END,
                   CASE WHEN count(*) FILTER (WHERE s IS NULL) = 0 THEN count(*) FILTER (WHERE s = 'old') END,
                   count(*) FILTER (WHERE s = 'plaintext'),
                   CASE WHEN count(*) FILTER (WHERE s IS NULL) = 0 THEN count(*) FILTER (WHERE s = 'undecryptable') END,
                   count(*) FILTER (WHERE f = 'cbc'),
                   count(*) FILTER (WHERE f = 'gcm')
              FROM (SELECT agentidp.agentidp_key_state(%2$I, %3$L) AS s,
                           agentidp.agentidp_encrypted_format(%2$I) AS f
                      FROM agentidp.%1$I WHERE %2$I IS NOT NULL) v$q$,
            c.table_name, c.column_name, c.context);
    END LOOP;
END
$fn$;

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
CREATE FUNCTION agentidp_reencrypt(batch_size integer DEFAULT 1000,
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
CREATE PROCEDURE agentidp_reencrypt_all(batch_size integer DEFAULT 1000)
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
