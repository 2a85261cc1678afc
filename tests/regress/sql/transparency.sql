-- The audit log as a transparency log: agentidp_seal() grows each chain's RFC 9162 tree, and
-- its roots and proofs are checked here by an implementation of RFC 9162 in plain SQL over
-- sha256(), with no code of ours.
\set ON_ERROR_ROLLBACK on
BEGIN;
SET LOCAL client_min_messages = warning;
CREATE FUNCTION pg_temp.leaf(h bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT sha256('\x00'::bytea || h) $$;
CREATE FUNCTION pg_temp.node(l bytea, r bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT sha256('\x01'::bytea || l || r) $$;
-- RFC 9162 §2.1.1: MTH over the leaf hashes, split at the largest power of two below n.
CREATE FUNCTION pg_temp.mth(leaves bytea[]) RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE n int := coalesce(cardinality(leaves), 0); k int := 1;
BEGIN
    IF n = 0 THEN RETURN sha256(''::bytea); END IF;
    IF n = 1 THEN RETURN leaves[1]; END IF;
    WHILE k * 2 < n LOOP k := k * 2; END LOOP;
    RETURN pg_temp.node(pg_temp.mth(leaves[1:k]), pg_temp.mth(leaves[k + 1:n]));
END $$;
CREATE FUNCTION pg_temp.root(chain text, size bigint) RETURNS bytea LANGUAGE sql AS $$
    SELECT pg_temp.mth(array_agg(pg_temp.leaf(hash) ORDER BY seq))
      FROM agentidp.audit_events WHERE chain_id = chain AND seq <= size $$;
-- RFC 9162 §2.1.3.2: an inclusion proof's root.
CREATE FUNCTION pg_temp.inclusion_root(leaf bytea, idx bigint, size bigint, proof bytea[])
RETURNS bytea LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE fn bigint := idx; sn bigint := size - 1; r bytea := leaf; p bytea;
BEGIN
    FOREACH p IN ARRAY coalesce(proof, '{}') LOOP
        IF sn = 0 THEN RETURN NULL; END IF;
        IF fn % 2 = 1 OR fn = sn THEN
            r := pg_temp.node(p, r);
            WHILE fn % 2 = 0 AND fn <> 0 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
        ELSE
            r := pg_temp.node(r, p);
        END IF;
        fn := fn / 2; sn := sn / 2;
    END LOOP;
    RETURN CASE WHEN sn = 0 THEN r END;
END $$;
-- RFC 9162 §2.1.4.2: the old and new roots a consistency proof gives.
CREATE FUNCTION pg_temp.consistency_roots(old_size bigint, new_size bigint, old_root bytea,
                                          proof bytea[], OUT o bytea, OUT n bytea)
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE fn bigint := old_size - 1; sn bigint := new_size - 1; p bytea; i int := 1;
BEGIN
    IF old_size = new_size THEN o := old_root; n := old_root; RETURN; END IF;
    IF old_size & (old_size - 1) = 0 THEN proof := old_root || proof; END IF;
    WHILE fn % 2 = 1 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
    o := proof[1]; n := proof[1];
    FOR i IN 2 .. cardinality(proof) LOOP
        p := proof[i];
        IF sn = 0 THEN o := NULL; n := NULL; RETURN; END IF;
        IF fn % 2 = 1 OR fn = sn THEN
            o := pg_temp.node(p, o); n := pg_temp.node(p, n);
            WHILE fn % 2 = 0 AND fn <> 0 LOOP fn := fn / 2; sn := sn / 2; END LOOP;
        ELSE
            n := pg_temp.node(n, p);
        END IF;
        fn := fn / 2; sn := sn / 2;
    END LOOP;
    IF sn <> 0 THEN o := NULL; n := NULL; END IF;
END $$;
-- A checkpoint note as the sidecar files it. The database verifies no signature, so the
-- signature line's bytes only need to parse: a key id and 64 bytes.
CREATE FUNCTION pg_temp.note(chain text, size bigint, root bytea) RETURNS text LANGUAGE sql AS $$
    SELECT 'agentidp.test/' || chain || E'\n' || size || E'\n' || encode(root, 'base64')
        || E'\n\n— agentidp.test '
        || translate(encode('\x01020304'::bytea || sha512('sig'), 'base64'), E'\n', '') || E'\n' $$;

INSERT INTO agentidp.audit_events (event_id, action, outcome, agent_id)
SELECT ('00000000-0000-0000-0000-' || lpad(to_hex(i), 12, '0'))::uuid, 'event.' || i, 'success',
       'agent-' || i % 7
  FROM generate_series(1, 300) i;
SET LOCAL agentidp.chain_scope = 'org';
INSERT INTO agentidp.audit_events (action, outcome, org_id)
SELECT 'org.event.' || i, 'success', 'org-7' FROM generate_series(1, 20) i;
RESET agentidp.chain_scope;

-- The first seal: every chain, every event, and the root RFC 9162 gives.
SELECT chain_id, status, tree_size, sealed_count, detail,
       root = pg_temp.root(chain_id, tree_size) AS rfc9162_root
  FROM agentidp.agentidp_seal() ORDER BY chain_id;
SELECT chain_id, level, idx, length(hashes) / 32 AS width
  FROM agentidp.merkle_tiles ORDER BY 1, 2, 3;
-- A full level-0 tile is the leaf hashes themselves.
SELECT (SELECT hashes FROM agentidp.merkle_tiles WHERE chain_id = 'global' AND level = 0 AND idx = 0)
     = (SELECT string_agg(pg_temp.leaf(hash), ''::bytea ORDER BY seq)
          FROM agentidp.audit_events WHERE chain_id = 'global' AND seq <= 256) AS tile_is_leaves;
-- Nothing new: nothing changes.
SELECT chain_id, status, sealed_count FROM agentidp.agentidp_seal() ORDER BY chain_id;

-- No checkpoint yet: no proof.
SELECT agentidp.agentidp_inclusion_proof(event_id) FROM agentidp.audit_events WHERE seq = 7 AND chain_id = 'global';
-- Filing checkpoints: the root must be the sealed tree's at that size.
SELECT chain_id, tree_size FROM agentidp.agentidp_record_checkpoint(
    pg_temp.note('global', 300, pg_temp.root('global', 300)));
SELECT chain_id, tree_size FROM agentidp.agentidp_record_checkpoint(
    pg_temp.note('global', 300, pg_temp.root('global', 300)));
SELECT chain_id, tree_size FROM agentidp.agentidp_record_checkpoint(
    pg_temp.note('global', 100, pg_temp.root('global', 100)));
SELECT agentidp.agentidp_record_checkpoint(pg_temp.note('global', 100, pg_temp.root('global', 99)));
SELECT agentidp.agentidp_record_checkpoint(pg_temp.note('global', 301, pg_temp.root('global', 300)));
SELECT agentidp.agentidp_record_checkpoint(pg_temp.note('org:org-8', 1, pg_temp.root('global', 1)));
SELECT agentidp.agentidp_record_checkpoint('agentidp.test/global' || E'\n300\nnot a root\n');
SELECT agentidp.agentidp_record_checkpoint(replace(pg_temp.note('global', 300, pg_temp.root('global', 300)), 'agentidp.test/', 'agentidp/test/'));

-- Inclusion proofs, against the latest checkpoint and an older one, checked by RFC 9162 in SQL.
SELECT e.seq, p.leaf_index, p.tree_size, cardinality(p.proof) AS hashes,
       pg_temp.inclusion_root(pg_temp.leaf(e.hash), p.leaf_index, p.tree_size, p.proof) = p.root AS holds,
       p.root = pg_temp.root('global', p.tree_size) AS signed_root,
       p.checkpoint LIKE 'agentidp.test/global' || E'\n' || p.tree_size || E'\n%' AS note
  FROM (VALUES (NULL::bigint), (100)) s(size), agentidp.audit_events e,
       LATERAL agentidp.agentidp_inclusion_proof(e.event_id, s.size) p
 WHERE e.chain_id = 'global' AND e.seq IN (1, 2, 99, 100, 256, 257, 300)
   AND (s.size IS NULL OR e.seq <= s.size)
 ORDER BY s.size NULLS FIRST, e.seq;
-- A proof does not hold for another leaf.
SELECT pg_temp.inclusion_root(pg_temp.leaf(sha256('other')), p.leaf_index, p.tree_size, p.proof) = p.root AS holds
  FROM agentidp.audit_events e, LATERAL agentidp.agentidp_inclusion_proof(e.event_id) p
 WHERE e.chain_id = 'global' AND e.seq = 50;
SELECT agentidp.agentidp_inclusion_proof(event_id, 200) FROM agentidp.audit_events WHERE seq = 7 AND chain_id = 'global';
SELECT agentidp.agentidp_inclusion_proof('00000000-0000-0000-0000-000000000000');

-- Consistency proofs between sizes, checked the same way.
SELECT o.size AS old_size, n.size AS new_size, c.o = pg_temp.root('global', o.size) AS old_holds,
       c.n = pg_temp.root('global', n.size) AS new_holds
  FROM (VALUES (1), (7), (100), (256), (300)) o(size), (VALUES (256), (300)) n(size),
       LATERAL agentidp.agentidp_consistency_proof('global', o.size, n.size) p,
       LATERAL pg_temp.consistency_roots(o.size, n.size, pg_temp.root('global', o.size), p) c
 WHERE o.size <= n.size ORDER BY 1, 2;
SELECT agentidp.agentidp_consistency_proof('global', 0, 5);
SELECT agentidp.agentidp_consistency_proof('global', 5, 301);
SELECT agentidp.agentidp_consistency_proof('nope', 1, 1);

-- Growth: new events extend the tree, which stays consistent with the checkpoint.
INSERT INTO agentidp.audit_events (action, outcome)
SELECT 'later.' || i, 'success' FROM generate_series(1, 213) i;
SELECT chain_id, status, tree_size, sealed_count, root = pg_temp.root(chain_id, tree_size) AS rfc9162_root
  FROM agentidp.agentidp_seal() ORDER BY chain_id;
SELECT c.o = pg_temp.root('global', 300) AND c.n = pg_temp.root('global', 513) AS consistent
  FROM pg_temp.consistency_roots(300, 513, pg_temp.root('global', 300),
                                 agentidp.agentidp_consistency_proof('global', 300, 513)) c;

-- The evidence tables only grow.
SAVEPOINT guards;
UPDATE agentidp.merkle_tiles SET hashes = substring(hashes FROM 1 FOR 32) WHERE chain_id = 'global' AND level = 0 AND idx = 0;
ROLLBACK TO SAVEPOINT guards;
DELETE FROM agentidp.checkpoints;
ROLLBACK TO SAVEPOINT guards;
UPDATE agentidp.checkpoints SET note = 'forged' WHERE tree_size = 300;
ROLLBACK TO SAVEPOINT guards;
TRUNCATE agentidp.merkle_trees;
ROLLBACK TO SAVEPOINT guards;
UPDATE agentidp.merkle_trees SET tree_size = 1 WHERE chain_id = 'global';
ROLLBACK TO SAVEPOINT guards;
UPDATE agentidp.checkpoints SET cosignatures = cosignatures || '— witness AAAA'::text WHERE tree_size = 300;
SELECT cardinality(cosignatures) FROM agentidp.checkpoints WHERE tree_size = 300;
UPDATE agentidp.checkpoints SET cosignatures = '{}' WHERE tree_size = 300;
ROLLBACK TO SAVEPOINT guards;

-- Retention keeps the leaves: proofs for archived and later events still hold.
SELECT chain_id, archived_count FROM agentidp.agentidp_archive_events(now() + interval '1 day', 'global');
SELECT count(*) AS live FROM agentidp.audit_events WHERE chain_id = 'global';
SELECT e.seq, pg_temp.inclusion_root(pg_temp.leaf(e.hash), p.leaf_index, p.tree_size, p.proof) = p.root AS holds
  FROM agentidp.audit_events_archive e, LATERAL agentidp.agentidp_inclusion_proof(e.event_id) p
 WHERE e.chain_id = 'global' AND e.seq IN (1, 300) ORDER BY e.seq;
SELECT count(*) AS lines, min(l::jsonb ->> 'seq') AS first
  FROM agentidp.agentidp_export('global', 1, 10) l;
SELECT chain_id, status, sealed_count FROM agentidp.agentidp_seal() ORDER BY chain_id;

-- A superuser rewrites event 150 and rehashes every later one, so the chain alone verifies;
-- the seal sees it, keeps the sealed tree, and records both roots and the first rewritten event.
CREATE FUNCTION pg_temp.frame(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN b IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(b)) || b END $$;
CREATE FUNCTION pg_temp.rehash(e agentidp.audit_events_archive) RETURNS bytea LANGUAGE sql AS $$
    SELECT sha256(pg_temp.frame('agentidp.audit_event.v1'::bytea)
        || pg_temp.frame(convert_to(e.chain_id, 'UTF8')) || pg_temp.frame(int8send(e.seq))
        || pg_temp.frame(e.prev_hash) || pg_temp.frame(uuid_send(e.event_id))
        || pg_temp.frame(int8send((extract(epoch FROM e.occurred_at) * 1000000)::bigint))
        || pg_temp.frame(convert_to(e.action, 'UTF8')) || pg_temp.frame(convert_to(e.outcome, 'UTF8'))
        || pg_temp.frame(convert_to(e.agent_id, 'UTF8')) || pg_temp.frame(convert_to(e.org_id, 'UTF8'))
        || pg_temp.frame(convert_to(e.metadata::text, 'UTF8'))) $$;
ALTER TABLE agentidp.audit_events_archive DISABLE TRIGGER ALL;
UPDATE agentidp.audit_events_archive SET outcome = 'failure' WHERE chain_id = 'global' AND seq = 150;
DO $$
DECLARE s bigint; prev bytea;
BEGIN
    FOR s IN 150 .. 513 LOOP
        SELECT hash INTO prev FROM agentidp.audit_events_archive WHERE chain_id = 'global' AND seq = s - 1;
        UPDATE agentidp.audit_events_archive a SET prev_hash = prev WHERE chain_id = 'global' AND seq = s;
        UPDATE agentidp.audit_events_archive a SET hash = pg_temp.rehash(a) WHERE chain_id = 'global' AND seq = s;
    END LOOP;
END $$;
ALTER TABLE agentidp.audit_events_archive ENABLE TRIGGER ALL;
SELECT count(*) = 0 AS chain_alone_rehashed FROM agentidp.audit_events_archive a
 WHERE chain_id = 'global' AND seq BETWEEN 150 AND 513 AND hash <> pg_temp.rehash(a);
SELECT chain_id, status, tree_size, sealed_count, detail LIKE 'first rewritten event % at seq 150' AS names_150
  FROM agentidp.agentidp_seal() WHERE chain_id = 'global';
SELECT reason, trusted_size, observed_size, first_rewritten_seq,
       trusted_root = (SELECT root FROM agentidp.merkle_trees WHERE chain_id = 'global') AS trusted_is_sealed,
       trusted_root <> observed_root AS roots_differ,
       first_rewritten_event_id = (SELECT event_id FROM agentidp.audit_events_archive WHERE chain_id = 'global' AND seq = 150) AS names_event
  FROM agentidp.checkpoint_refusals;
-- Sealing again keeps refusing, and files the evidence once.
SELECT status FROM agentidp.agentidp_seal() WHERE chain_id = 'global';
SELECT count(*) FROM agentidp.checkpoint_refusals;
-- And the proof of the rewritten event is refused rather than served for another hash.
SELECT agentidp.agentidp_inclusion_proof(event_id) FROM agentidp.audit_events_archive WHERE chain_id = 'global' AND seq = 150;
ROLLBACK;
