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

-- One batch of a rotation: rewrites at most batch_size values (plaintext, under an old key, or
-- in the format not configured) under the current key and format, and counts what is left. Call
-- it until remaining = 0, each call in its own transaction, or CALL agentidp_reencrypt_all().
--
-- Resumable and idempotent: what a batch has to do is read from the rows themselves, so an
-- interrupted run loses only its uncommitted batch, which the next call redoes. No write is lost:
-- the new value is computed in the UPDATE from the row version it locks, and the value is
-- rewritten only if, in that version, it still needs it. Undecryptable values are left alone and
-- counted: they need the key they were written with in agentidp.encryption_old_keys.
CREATE FUNCTION agentidp_reencrypt(batch_size integer DEFAULT 1000,
    OUT rewritten bigint, OUT remaining bigint, OUT undecryptable bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    c record;
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
    FOR c IN SELECT * FROM agentidp.encrypted_columns ORDER BY 1, 2 LOOP
        IF rewritten < batch_size THEN
            EXECUTE format($q$
                UPDATE agentidp.%1$I SET %2$I = agentidp.agentidp_reencrypt_value(%2$I, $1)
                 WHERE %3$I IN (SELECT %3$I FROM agentidp.%1$I
                                 WHERE agentidp.agentidp_needs_reencryption(%2$I, $1)
                                 ORDER BY %3$I LIMIT $2)
                   AND agentidp.agentidp_needs_reencryption(%2$I, $1)$q$,
                c.table_name, c.column_name, c.key_column)
            USING c.context, batch_size - rewritten;
            GET DIAGNOSTICS n = ROW_COUNT;
            rewritten := rewritten + n;
        END IF;
        EXECUTE format($q$
            SELECT count(*) FILTER (WHERE agentidp.agentidp_needs_reencryption(%2$I, $1)),
                   count(*) FILTER (WHERE agentidp.agentidp_key_state(%2$I, $1) = 'undecryptable')
              FROM agentidp.%1$I WHERE %2$I IS NOT NULL$q$,
            c.table_name, c.column_name)
        INTO left_here, stuck_here USING c.context;
        remaining := remaining + left_here;
        undecryptable := undecryptable + stuck_here;
    END LOOP;
END
$fn$;

-- The whole rotation, one committed transaction per batch: locks are held for one batch only,
-- and an interruption keeps every batch committed before it. CALL it outside a transaction block.
-- No SET clause: a procedure with one cannot COMMIT.
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
        -- Nothing rewritten with work left means every candidate changed under us: stop rather
        -- than spin; calling again picks them up.
        EXIT WHEN r.remaining = 0 OR r.rewritten = 0;
    END LOOP;
    IF r.undecryptable > 0 THEN
        RAISE WARNING 'agentidp_reencrypt_all: % values decrypt under none of the configured keys and were left as they are', r.undecryptable
            USING HINT = 'Find them with agentidp.agentidp_key_state(); see docs/encryption-runbook.md.';
    END IF;
END
$fn$;
