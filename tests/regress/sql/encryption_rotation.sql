-- Key rotation: old keys read, agentidp_reencrypt() rewrites in bounded batches, the census
-- counts what is left, and nothing is lost or encrypted twice.
LOAD 'pg_agentidp';
BEGIN;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- 40 credentials (80 values), 10 webhooks and 10 DID keys under key A; 5 legacy plaintext rows.
SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
INSERT INTO agentidp.credentials (org_id, secret_hash, vault_path)
SELECT 'org-' || i, 'secret-' || i, 'secret/data/cred/' || i FROM generate_series(1, 40) i;
INSERT INTO agentidp.webhook_subscriptions (org_id, url, vault_secret_path)
SELECT 'org-' || i, 'https://hooks.example/' || i, 'secret/data/webhook/' || i FROM generate_series(1, 10) i;
INSERT INTO agentidp.agent_did_keys (agent_id, did, vault_key_path)
SELECT 'agent-' || i, 'did:web:' || i, 'secret/data/did/' || i FROM generate_series(1, 10) i;
ALTER TABLE agentidp.credentials DISABLE TRIGGER zz_agentidp_encrypt;
INSERT INTO agentidp.credentials (org_id, secret_hash)
SELECT 'legacy-' || i, 'legacy-secret-' || i FROM generate_series(1, 5) i;
ALTER TABLE agentidp.credentials ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
SELECT * FROM agentidp.agentidp_encryption_status();

-- Rotate: key B current, key A old. Nothing is rewritten yet; everything reads.
SET agentidp.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SET agentidp.encryption_old_keys = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
SELECT table_name, column_name, total, current_key, old_key, plaintext FROM agentidp.agentidp_encryption_status();
SELECT count(*) FILTER (WHERE agentidp.agentidp_decrypt(secret_hash) = 'secret-' || substr(org_id, 5)) AS readable
  FROM agentidp.credentials WHERE org_id LIKE 'org-%';
-- Batches of 30 values, as separate calls would in separate transactions.
SELECT pg_temp.try($$SELECT * FROM agentidp.agentidp_reencrypt(0)$$) AS zero_batch;
SELECT * FROM agentidp.agentidp_reencrypt(30);
SELECT * FROM agentidp.agentidp_reencrypt(30);
-- "Interrupted" here: a census shows the half-way state, then the run resumes where it was.
SELECT sum(current_key) AS current, sum(old_key) AS old, sum(plaintext) AS plaintext
  FROM agentidp.agentidp_encryption_status();
-- The walk's position, committed with each batch: the next one reads on from this key.
SELECT table_name, column_name, last_key IS NOT NULL AS has_key, remaining FROM agentidp.reencryption_pass;
SELECT * FROM agentidp.agentidp_reencrypt(30);
SELECT * FROM agentidp.agentidp_reencrypt(30);
SELECT * FROM agentidp.agentidp_reencrypt(30);
-- Done: a further call has nothing to do.
SELECT * FROM agentidp.agentidp_reencrypt(30);
SELECT table_name IS NULL AS no_pass_under_way FROM agentidp.reencryption_pass;
SELECT * FROM agentidp.agentidp_encryption_status();

-- Without the old key every value still reads, each to its own plaintext, encrypted once.
RESET agentidp.encryption_old_keys;
SELECT count(*) AS rows,
       count(*) FILTER (WHERE agentidp.agentidp_decrypt(secret_hash) = 'secret-' || substr(org_id, 5)
                          AND agentidp.agentidp_decrypt(vault_path) = 'secret/data/cred/' || substr(org_id, 5)) AS intact
  FROM agentidp.credentials WHERE org_id LIKE 'org-%';
SELECT count(*) FILTER (WHERE agentidp.agentidp_decrypt(secret_hash) = 'legacy-secret-' || substr(org_id, 8)) AS legacy_intact
  FROM agentidp.credentials WHERE org_id LIKE 'legacy-%';
SELECT count(*) FILTER (WHERE agentidp.agentidp_decrypt(vault_secret_path) = 'secret/data/webhook/' || substr(org_id, 5)) AS webhooks_intact
  FROM agentidp.webhook_subscriptions;
SELECT count(*) FILTER (WHERE agentidp.agentidp_decrypt(vault_key_path) = 'secret/data/did/' || substr(agent_id, 7)) AS did_keys_intact
  FROM agentidp.agent_did_keys;

-- Switching the format is a rotation too: cbc values are rewritten as gcm under the same key.
SET agentidp.encryption_format = gcm;
SELECT * FROM agentidp.agentidp_reencrypt(1000);
SELECT table_name, column_name, current_key, cbc_format, gcm_format FROM agentidp.agentidp_encryption_status();
SELECT count(*) FILTER (WHERE agentidp.agentidp_decrypt(secret_hash, 'agentidp.credentials.secret_hash') = 'secret-' || substr(org_id, 5)) AS gcm_intact
  FROM agentidp.credentials WHERE org_id LIKE 'org-%';
-- Key ids make the old key's values countable in plain SQL.
SELECT split_part(secret_hash, ':', 3) AS key_id, count(*) FROM agentidp.credentials GROUP BY 1;

-- A value under a key that is not configured is reported, never overwritten.
ALTER TABLE agentidp.webhook_subscriptions DISABLE TRIGGER zz_agentidp_encrypt;
UPDATE agentidp.webhook_subscriptions SET vault_secret_path = 'AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA=='
 WHERE org_id = 'org-1';
ALTER TABLE agentidp.webhook_subscriptions ENABLE ALWAYS TRIGGER zz_agentidp_encrypt;
SELECT agentidp.agentidp_key_state(vault_secret_path, 'agentidp.webhook_subscriptions.vault_secret_path')
  FROM agentidp.webhook_subscriptions WHERE org_id = 'org-1';
SELECT * FROM agentidp.agentidp_reencrypt(1000);
SELECT vault_secret_path FROM agentidp.webhook_subscriptions WHERE org_id = 'org-1';
SELECT table_name, undecryptable FROM agentidp.agentidp_encryption_status() WHERE undecryptable > 0;
SELECT pg_temp.try($$SELECT agentidp.agentidp_reencrypt_value('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==', 'x')$$) AS reencrypt_undecryptable;
-- With the missing key back among the old ones, the value is rewritten.
SET agentidp.encryption_old_keys = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
SELECT * FROM agentidp.agentidp_reencrypt(1000);
SELECT agentidp.agentidp_decrypt(vault_secret_path, 'agentidp.webhook_subscriptions.vault_secret_path')
  FROM agentidp.webhook_subscriptions WHERE org_id = 'org-1';

-- The procedure commits per batch, so it refuses to run inside a transaction block
-- (tests/encryption_rotation.sh runs it for real).
SAVEPOINT s;
CALL agentidp.agentidp_reencrypt_all(10);
ROLLBACK TO SAVEPOINT s;
-- Re-encryption needs a key.
RESET agentidp.encryption_key;
SELECT pg_temp.try($$SELECT * FROM agentidp.agentidp_reencrypt(10)$$) AS no_key;
ROLLBACK;
