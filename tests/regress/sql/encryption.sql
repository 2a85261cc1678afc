-- Column encryption: the functions, the key settings and every error, with SQLSTATEs.
-- Production preloads the library (shared_preload_libraries), so the settings exist, hidden and
-- checked, before a session can set them; LOAD does the same for this session.
LOAD 'pg_agentidp';
BEGIN;
-- SQLSTATE and message of a statement, or 'ok'.
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- No key: encrypting or decrypting is a clear error; a plaintext passes through without one.
SELECT pg_temp.try($$SELECT agentidp.agentidp_encrypt('x')$$) AS no_key_encrypt;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==')$$) AS no_key_decrypt;
SELECT agentidp.agentidp_decrypt('not encrypted') AS no_key_passthrough;
-- Strict mode refuses that plaintext with no key as it does with one; the key census still
-- classifies it (and cannot place an encrypted value without a key).
SET agentidp.encryption_strict = on;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('not encrypted')$$) AS no_key_strict;
SELECT agentidp.agentidp_key_state('not encrypted') AS no_key_state_plain,
       agentidp.agentidp_key_state('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') IS NULL AS no_key_state_encrypted;
RESET agentidp.encryption_strict;
SAVEPOINT s;
SELECT agentidp.agentidp_encrypt('x');
ROLLBACK TO SAVEPOINT s;

-- Invalid keys are refused when set, with the library's message: the value is never quoted.
SET agentidp.encryption_key = 'abc';
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.try($$SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dffg'$$) AS not_hex;
SELECT pg_temp.try($$SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4 '$$) AS trailing_space;
SELECT pg_temp.try($$SET agentidp.encryption_old_keys = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4, 0011'$$) AS bad_old_key;
-- Empty means no key.
SET agentidp.encryption_key = '';
SELECT pg_temp.try($$SELECT agentidp.agentidp_encrypt('x')$$) AS empty_key;

-- The seed format's known answers: made by
--   printf %s 's3cret-value' | openssl enc -aes-256-cbc -K <key> -iv 000102030405060708090a0b0c0d0e0f
SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS known_1,
       agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:/h0YKegbNBWRII3gEmGP0eHNUQJ51UTpaxz3Iii6fFs=') AS known_2;
-- Upper-case hex is the same key.
SET agentidp.encryption_key = '603DEB1015CA71BE2B73AEF0857D77811F352C073B6108D72D9810A30914DFF4';
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS upper_case_key;

-- Round trips in the seed format: base64(16-byte IV):base64(ciphertext), a fresh IV each time.
SELECT length(v) AS plaintext_length,
       agentidp.agentidp_decrypt(c) = v AS round_trip,
       agentidp.agentidp_is_encrypted(c) AS recognised,
       c ~ '^[A-Za-z0-9+/]{22}==:([A-Za-z0-9+/]{4})*([A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$' AS seed_shape,
       length(decode(split_part(c, ':', 2), 'base64')) AS ciphertext_bytes,
       agentidp.agentidp_encrypted_format(c) AS format
  FROM (VALUES (''), ('a'), ('exactly 16 bytes'), ('ünïcødé ✓ 🔑'), (repeat('x', 5000))) t(v),
       LATERAL (SELECT agentidp.agentidp_encrypt(v) AS c) e
 ORDER BY 1;
SELECT count(DISTINCT agentidp.agentidp_encrypt('same')) AS distinct_ciphertexts FROM generate_series(1, 100);

-- Recognition never needs a key and never decrypts.
SELECT v, agentidp.agentidp_is_encrypted(v), agentidp.agentidp_encrypted_format(v)
  FROM (VALUES ('plain'), ('a:b'), ('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA=='),
               ('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA'), ('agentidp:v2:nope')) t(v);

-- A plaintext is returned unchanged and counted in this session's agentidp_plaintext_reads().
SELECT agentidp.agentidp_plaintext_reads() AS reads_before \gset
SELECT agentidp.agentidp_decrypt('plain'), agentidp.agentidp_decrypt('also:plain'), agentidp.agentidp_decrypt('');
SELECT agentidp.agentidp_plaintext_reads() - :reads_before AS counted;
-- Strict: a plaintext is an error; encrypted values still decrypt.
SET agentidp.encryption_strict = on;
SAVEPOINT s;
SELECT agentidp.agentidp_decrypt('plain');
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('plain')$$) AS strict;
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS strict_encrypted;
RESET agentidp.encryption_strict;
-- NULL in, NULL out: the functions are STRICT.
SELECT agentidp.agentidp_encrypt(NULL) IS NULL AS e, agentidp.agentidp_decrypt(NULL) IS NULL AS d,
       agentidp.agentidp_is_encrypted(NULL) IS NULL AS i;

-- A wrong key: the seed format's error.
SET agentidp.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SAVEPOINT s;
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==');
ROLLBACK TO SAVEPOINT s;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==')$$) AS wrong_key;
-- During a rotation the old key still reads; new values are written under the current one.
SET agentidp.encryption_old_keys = ' 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4 ,';
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS old_key_reads;
SELECT * FROM agentidp.agentidp_encryption_key_ids();
-- SHOW prints key ids, never keys, even to a superuser.
SHOW agentidp.encryption_key;
SHOW agentidp.encryption_old_keys;
SELECT current_setting('agentidp.encryption_key') AS current_setting;
RESET agentidp.encryption_old_keys;

-- The authenticated format: agentidp:v2:<key id>:<nonce>:<ciphertext+tag>, bound to its context.
SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
SET agentidp.encryption_format = gcm;
SELECT c ~ '^agentidp:v2:c2333b21:[A-Za-z0-9+/]{16}:[A-Za-z0-9+/=]+$' AS v2_shape,
       agentidp.agentidp_encrypted_format(c) AS format,
       agentidp.agentidp_decrypt(c, 'agentidp.credentials.secret_hash') AS same_column,
       pg_temp.try(format('SELECT agentidp.agentidp_decrypt(%L, %L)', c, 'agentidp.credentials.vault_path')) AS moved_column,
       pg_temp.try(format('SELECT agentidp.agentidp_decrypt(%L)', c)) AS no_context
  FROM (SELECT agentidp.agentidp_encrypt('s3cret-value', 'agentidp.credentials.secret_hash') AS c) e;
-- Known values made earlier under this key; then edited by one character.
SELECT agentidp.agentidp_decrypt('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DQ==',
                                 'agentidp.credentials.secret_hash') AS known_v2;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DA==', 'agentidp.credentials.secret_hash')$$) AS tampered;
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv', 'agentidp.credentials.secret_hash')$$) AS truncated;
-- The seed format stays readable (and writable) when gcm is configured.
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS cbc_under_gcm;
-- A v2 value names its key: under another key, the error says which one is missing.
SET agentidp.encryption_key = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
SELECT pg_temp.try($$SELECT agentidp.agentidp_decrypt('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DQ==', 'agentidp.credentials.secret_hash')$$) AS unknown_key_id;
SAVEPOINT s;
SELECT agentidp.agentidp_decrypt('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DQ==', 'agentidp.credentials.secret_hash');
ROLLBACK TO SAVEPOINT s;
RESET agentidp.encryption_format;

-- The format and strictness are the deployment's policy: a plain role cannot change them.
CREATE ROLE agentidp_enc_reader;
GRANT USAGE ON SCHEMA agentidp TO agentidp_enc_reader;
SAVEPOINT with_role;
SET ROLE agentidp_enc_reader;
SELECT pg_temp.try($$SET agentidp.encryption_format = cbc$$) AS format_by_role;
SELECT pg_temp.try($$SET agentidp.encryption_strict = off$$) AS strict_by_role;
-- A role without pg_read_all_settings can set and use a key, but not read it back.
SELECT pg_temp.try($$SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4'$$) AS set_by_role;
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS role_decrypts;
SELECT pg_temp.try($$SHOW agentidp.encryption_key$$) AS show;
SELECT pg_temp.try($$SELECT current_setting('agentidp.encryption_key')$$) AS current_setting;
SELECT pg_temp.try($$SELECT current_setting('agentidp.encryption_key', true)$$) AS current_setting_missing_ok;
SELECT pg_temp.try($$SHOW agentidp.encryption_old_keys$$) AS show_old;
SELECT name FROM pg_settings WHERE name LIKE 'agentidp.%' ORDER BY 1;
-- Nor store it where others could read it: role and database settings, function SET clauses.
SELECT pg_temp.try($$ALTER ROLE agentidp_enc_reader SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4'$$) AS alter_role_by_role;
RESET ROLE;
ALTER ROLE agentidp_enc_reader SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
ROLLBACK TO SAVEPOINT with_role;
SELECT pg_temp.try($$ALTER DATABASE agentidp_regress SET agentidp.encryption_old_keys = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4'$$) AS alter_database;
SELECT pg_temp.try($$CREATE FUNCTION pg_temp.keyed() RETURNS int LANGUAGE sql SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4' AS 'SELECT 1'$$) AS function_set;
-- Clearing a stored setting is always allowed.
ALTER ROLE agentidp_enc_reader SET agentidp.encryption_key = '';
ALTER ROLE agentidp_enc_reader RESET agentidp.encryption_key;
-- Even a superuser does not find the keys in pg_settings.
SELECT name FROM pg_settings WHERE name LIKE 'agentidp.%' ORDER BY 1;
-- The declared properties of the functions.
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'agentidp' AND p.proname IN ('agentidp_encrypt', 'agentidp_decrypt', 'agentidp_is_encrypted',
       'agentidp_encrypted_format', 'agentidp_plaintext_reads', 'agentidp_key_state',
       'agentidp_needs_reencryption', 'agentidp_reencrypt_value', 'agentidp_encryption_key_ids')
 ORDER BY 1;
ROLLBACK;
