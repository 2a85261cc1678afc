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
