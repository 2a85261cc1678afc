-- Malformed values through every SQL entry point of the decrypt path: each one either passes
-- through, decrypts, or fails with a clean error of a known SQLSTATE; never a crash, never an
-- internal error. The inputs are deterministic mutations of valid values of both formats, so the
-- tallies below are stable. (agentidp-core's property tests fuzz the parser itself.)
LOAD 'pg_agentidp';
BEGIN;
SET agentidp.encryption_key = '603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4';
SET agentidp.encryption_old_keys = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';

CREATE TEMP TABLE seeds (s text);
INSERT INTO seeds VALUES
  ('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA=='),
  ('AAECAwQFBgcICQoLDA0ODw==:/h0YKegbNBWRII3gEmGP0eHNUQJ51UTpaxz3Iii6fFs='),
  ('agentidp:v2:c2333b21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DQ=='),
  ('agentidp:v2:c2333b21:oaiYuvfZVkdUjdHZ:trzuwTI0fMiJ2ZAfHtYWGZoFSJ4WGUeBskPXE4hOEKCb0cduiA==');

-- Mutations at every position: truncate, drop a character, replace it with one of a set that
-- includes the format's separators, padding, non-base64, non-ASCII and a NUL-free control char,
-- and insert one; plus whole values that are edge cases on their own.
CREATE TEMP TABLE inputs AS
SELECT DISTINCT v FROM (
  SELECT left(s, p) AS v FROM seeds, generate_series(0, length(s)) p
  UNION ALL SELECT left(s, p - 1) || substr(s, p + 1) FROM seeds, generate_series(1, length(s)) p
  UNION ALL SELECT left(s, p - 1) || r || substr(s, p + 1)
    FROM seeds, generate_series(1, length(s)) p, unnest(ARRAY[':', '=', 'A', '/', '-', 'é', E'\t', ' ']) r
  UNION ALL SELECT left(s, p) || r || substr(s, p + 1)
    FROM seeds, generate_series(0, length(s)) p, unnest(ARRAY[':', '==', 'AAAA']) r
  UNION ALL SELECT unnest(ARRAY['', ':', '::', ':::::', '=', '====:====', 'agentidp:v2:', 'agentidp:v2:::',
    'agentidp:v2:c2333b21:::', 'agentidp:v2:C2333B21:XVqyoHxqmbuHs8rv:oQmFSxijLtkr7AVS84OhbxjccI4FXBax6pX5DQ==',
    'AAECAwQFBgcICQoLDA0ODw==:', ':I7Yu5Ua6Zva8L1ZUDTULHA==', repeat('A', 24) || ':' || repeat('A', 100000),
    repeat('A', 22) || '==:' || repeat('A', 21) || '==', repeat('A', 22) || '==:' || repeat('/', 64),
    'agentidp:v2:00000000:AAAAAAAAAAAAAAAA:' || repeat('A', 24), repeat(':', 10000), repeat('é', 1000)])
) m;

-- Outcome of one call: pass (returned unchanged), ok (returned something else), or the SQLSTATE.
CREATE FUNCTION pg_temp.outcome(q text, v text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text;
BEGIN
  EXECUTE q INTO r USING v;
  RETURN CASE WHEN r IS NOT DISTINCT FROM v THEN 'pass' ELSE 'ok' END;
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;

CREATE TEMP TABLE outcomes AS
SELECT v, f, pg_temp.outcome(q, v) AS outcome
  FROM inputs, (VALUES
    ('decrypt', 'SELECT agentidp.agentidp_decrypt($1)'),
    ('decrypt_ctx', 'SELECT agentidp.agentidp_decrypt($1, ''agentidp.credentials.secret_hash'')'),
    ('is_encrypted', 'SELECT agentidp.agentidp_is_encrypted($1)::text'),
    ('format', 'SELECT agentidp.agentidp_encrypted_format($1)'),
    ('key_state', 'SELECT agentidp.agentidp_key_state($1, ''agentidp.credentials.secret_hash'')'),
    ('needs', 'SELECT agentidp.agentidp_needs_reencryption($1, ''agentidp.credentials.secret_hash'')::text'),
    ('reencrypt', 'SELECT agentidp.agentidp_reencrypt_value($1, ''agentidp.credentials.secret_hash'')')
  ) fns(f, q);

SELECT count(*) > 2000 AS many_inputs FROM inputs;
-- Every outcome is one of the expected ones: no XX000 (a panic caught at the boundary would be one).
SELECT f, outcome, count(*) FROM outcomes GROUP BY 1, 2 ORDER BY 1, 2;
SELECT count(*) AS unexpected FROM outcomes WHERE outcome NOT IN ('pass', 'ok', '22000', '22P02', '55000');
-- Consistency: nothing is_encrypted recognises is ever passed through as plaintext.
SELECT count(*) AS inconsistent
  FROM outcomes WHERE f = 'decrypt' AND outcome = 'pass' AND agentidp.agentidp_is_encrypted(v);
-- The session survived all of it.
SELECT agentidp.agentidp_decrypt('AAECAwQFBgcICQoLDA0ODw==:I7Yu5Ua6Zva8L1ZUDTULHA==') AS still_fine;
ROLLBACK;
