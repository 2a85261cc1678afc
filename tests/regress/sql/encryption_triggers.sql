-- The four sensitive columns are encrypted by their triggers: idempotently, and never stored as
-- plaintext when there is no key.
LOAD 'pg_agentidp';
BEGIN;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- The inventory and the triggers agree, and the triggers fire even for replication role replica.
SELECT table_name, column_name, key_column, context FROM agentidp.encrypted_columns ORDER BY 1, 2;
SELECT c.relname, t.tgname, t.tgenabled,
       string_to_array(rtrim(encode(t.tgargs, 'escape'), '\000'), '\000') AS args
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE t.tgfoid = 'agentidp.agentidp_encrypt_columns'::regproc ORDER BY 1;
SELECT count(*) AS uncovered
  FROM agentidp.encrypted_columns e
 WHERE NOT EXISTS (
   SELECT 1 FROM pg_trigger t
    WHERE t.tgrelid = ('agentidp.' || e.table_name)::regclass
      AND t.tgfoid = 'agentidp.agentidp_encrypt_columns'::regproc
      AND e.column_name = ANY (string_to_array(rtrim(encode(t.tgargs, 'escape'), '\000'), '\000')));

-- Fail closed: without a key, a plaintext is not written.
SAVEPOINT s;
INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-1', 'hunter2');
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.try($$INSERT INTO agentidp.webhook_subscriptions (org_id, url, vault_secret_path) VALUES ('org-1', 'https://h', 'secret/wh')$$) AS no_key_webhook;
SELECT pg_temp.try($$INSERT INTO agentidp.agent_did_keys (agent_id, did, vault_key_path) VALUES ('a', 'did:x', 'secret/did')$$) AS no_key_did;
-- Already-encrypted values (a restore, a replica) and NULLs need no key.
INSERT INTO agentidp.credentials (credential_id, org_id, secret_hash, vault_path)
VALUES ('00000000-0000-0000-0000-000000000001', 'org-restored',
        'AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==', NULL);
SELECT secret_hash, vault_path FROM agentidp.credentials;

SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
INSERT INTO agentidp.credentials (credential_id, org_id, secret_hash, vault_path) VALUES
  ('00000000-0000-0000-0000-000000000002', 'org-1', 'hunter2', 'secret/data/cred/2'),
  ('00000000-0000-0000-0000-000000000003', 'org-1', '', NULL);
INSERT INTO agentidp.webhook_subscriptions (subscription_id, org_id, url, vault_secret_path)
VALUES ('00000000-0000-0000-0000-000000000004', 'org-1', 'https://hooks.example', 'secret/data/webhook/4');
INSERT INTO agentidp.agent_did_keys (key_id, agent_id, did, vault_key_path)
VALUES ('00000000-0000-0000-0000-000000000005', 'agent-5', 'did:web:5', 'secret/data/did/5');
-- The restored value is kept as it was, the new ones are sealed, NULL stays NULL.
SELECT credential_id, agentidp.agentidp_is_encrypted(secret_hash) AS secret_sealed,
       agentidp.agentidp_decrypt(secret_hash) AS secret,
       agentidp.agentidp_is_encrypted(vault_path) AS path_sealed, agentidp.agentidp_decrypt(vault_path) AS path
  FROM agentidp.credentials ORDER BY 1;
SELECT agentidp.agentidp_decrypt(vault_secret_path) FROM agentidp.webhook_subscriptions;
SELECT agentidp.agentidp_decrypt(vault_key_path) FROM agentidp.agent_did_keys;
-- RETURNING sees what is stored.
INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-2', 'returned')
RETURNING agentidp.agentidp_is_encrypted(secret_hash) AS stored_sealed;

-- Saving a row back, or copying values around, never encrypts twice.
CREATE TEMP TABLE before AS SELECT credential_id, secret_hash, vault_path FROM agentidp.credentials;
UPDATE agentidp.credentials SET secret_hash = secret_hash, vault_path = vault_path;
SELECT count(*) AS unchanged FROM agentidp.credentials c JOIN before b USING (credential_id)
 WHERE c.secret_hash = b.secret_hash AND c.vault_path IS NOT DISTINCT FROM b.vault_path;
-- An update to a sensitive column seals the new value; one that leaves them alone does not look.
UPDATE agentidp.credentials SET secret_hash = 'rotated-secret', rotated_at = now()
 WHERE credential_id = '00000000-0000-0000-0000-000000000002';
SELECT agentidp.agentidp_decrypt(secret_hash) FROM agentidp.credentials
 WHERE credential_id = '00000000-0000-0000-0000-000000000002';
RESET agentidp.encryption_key;
UPDATE agentidp.credentials SET status = 'revoked' WHERE credential_id = '00000000-0000-0000-0000-000000000002';
SAVEPOINT s;
UPDATE agentidp.credentials SET vault_path = 'secret/new' WHERE credential_id = '00000000-0000-0000-0000-000000000002';
ROLLBACK TO SAVEPOINT s;
-- session_replication_role = replica does not let plaintext in either.
SET LOCAL session_replication_role = replica;
SELECT pg_temp.try($$INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-1', 'via replica')$$) AS replica;
RESET session_replication_role;
-- COPY goes through the trigger too.
SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
COPY agentidp.agent_did_keys (agent_id, did, vault_key_path) FROM STDIN;
agent-copy	did:web:copy	secret/data/did/copy
\.
SELECT agentidp.agentidp_is_encrypted(vault_key_path), agentidp.agentidp_decrypt(vault_key_path)
  FROM agentidp.agent_did_keys WHERE agent_id = 'agent-copy';

-- A value carrying the v2 prefix but damaged is not plaintext to seal: it is refused.
SELECT pg_temp.try($$INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-1', 'agentidp:v2:damaged')$$) AS damaged_v2;

-- gcm: each value is bound to its own column; moved to another, it does not decrypt.
SET agentidp.encryption_format = gcm;
INSERT INTO agentidp.credentials (credential_id, org_id, secret_hash, vault_path)
VALUES ('00000000-0000-0000-0000-000000000006', 'org-1', 'gcm-secret', 'secret/data/cred/6');
SELECT agentidp.agentidp_encrypted_format(secret_hash) AS format,
       agentidp.agentidp_decrypt(secret_hash, 'agentidp.credentials.secret_hash') AS secret,
       agentidp.agentidp_decrypt(vault_path, 'agentidp.credentials.vault_path') AS path
  FROM agentidp.credentials WHERE credential_id = '00000000-0000-0000-0000-000000000006';
-- Moving a sealed value is allowed by the trigger (it is encrypted), and caught on read.
UPDATE agentidp.credentials SET vault_path = secret_hash WHERE credential_id = '00000000-0000-0000-0000-000000000006';
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt(vault_path, 'agentidp.credentials.vault_path') FROM agentidp.credentials WHERE credential_id = '00000000-0000-0000-0000-000000000006'$$) AS moved;

-- The census: one call for the CC6.1 check.
INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-legacy', 'x');
ALTER TABLE agentidp.credentials DISABLE TRIGGER zz_agentidp_encrypt;
INSERT INTO agentidp.credentials (org_id, secret_hash) VALUES ('org-legacy', 'legacy plaintext');
ALTER TABLE agentidp.credentials ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
SELECT * FROM agentidp.agentidp_encryption_status();
SELECT sum(plaintext) = 0 AS cc61_no_plaintext FROM agentidp.agentidp_encryption_status();
-- Without a key the census still counts plaintext; what needs a key is NULL.
RESET agentidp.encryption_key;
SELECT table_name, column_name, total, current_key, plaintext, undecryptable
  FROM agentidp.agentidp_encryption_status() ORDER BY 1, 2;

-- The trigger function refuses to be misused.
CREATE TEMP TABLE misuse (v text, n int);
CREATE TRIGGER t AFTER INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION agentidp.agentidp_encrypt_columns('v');
SELECT pg_temp.try($$INSERT INTO misuse VALUES ('x', 1)$$) AS after_trigger;
DROP TRIGGER t ON misuse;
CREATE TRIGGER t BEFORE INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION agentidp.agentidp_encrypt_columns();
SELECT pg_temp.try($$INSERT INTO misuse VALUES ('x', 1)$$) AS no_columns;
DROP TRIGGER t ON misuse;
CREATE TRIGGER t BEFORE INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION agentidp.agentidp_encrypt_columns('missing');
SELECT pg_temp.try($$INSERT INTO misuse VALUES ('x', 1)$$) AS missing_column;
DROP TRIGGER t ON misuse;
ROLLBACK;
