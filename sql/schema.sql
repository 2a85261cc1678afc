-- pg_agentidp schema: runs before every generated function (pgrx `bootstrap`).
-- The chain's hash covers text as UTF-8 bytes; another server encoding would hash other bytes
-- than the runbook documents.
DO $$
BEGIN
  IF current_setting('server_encoding') <> 'UTF8' THEN
    RAISE EXCEPTION 'pg_agentidp requires a UTF8 database, this one is %', current_setting('server_encoding');
  END IF;
END $$;

CREATE TABLE audit_events (
    event_id    uuid        NOT NULL DEFAULT gen_random_uuid(),
    occurred_at timestamptz NOT NULL DEFAULT now() CHECK (isfinite(occurred_at)),
    action      text        NOT NULL,
    outcome     text        NOT NULL,
    agent_id    text,
    org_id      text,
    metadata    jsonb,
    -- Chain columns: filled by the chain trigger, whatever the client sent.
    chain_id    text        NOT NULL DEFAULT '',
    seq         bigint      NOT NULL DEFAULT 0,
    prev_hash   bytea       NOT NULL DEFAULT ''::bytea,
    hash        bytea       NOT NULL DEFAULT ''::bytea,
    -- DEFERRABLE keeps both out of INSERT ... ON CONFLICT DO NOTHING's arbiters: a row skipped there
    -- after the trigger gave it a chain position would leave a gap. A duplicate errors instead.
    CONSTRAINT audit_events_pkey PRIMARY KEY (chain_id, seq) DEFERRABLE INITIALLY IMMEDIATE,
    CONSTRAINT audit_events_event_id_key UNIQUE (event_id) DEFERRABLE INITIALLY IMMEDIATE
);
CREATE INDEX audit_events_occurred_at_idx ON audit_events (occurred_at);
COMMENT ON TABLE audit_events IS
  'Append-only audit log; each row is chained to its predecessor by a SHA-256 hash (docs/audit-log-runbook.md).';

-- One number per transaction that appends to a chain, drawn under the chain's lock: a session
-- whose numbers follow each other knows nobody else appended in between, and reuses the heads it
-- committed instead of reading them again (pg_agentidp/core/src/head_cache.rs). CACHE 1: with
-- numbers cached per session, one session's would follow each other while another appended.
CREATE SEQUENCE chain_appends CACHE 1;

-- Events removed by agentidp_archive_events(), kept with their chain columns so they stay verifiable.
CREATE TABLE audit_events_archive (LIKE audit_events INCLUDING DEFAULTS);
ALTER TABLE audit_events_archive ADD PRIMARY KEY (chain_id, seq);
ALTER TABLE audit_events_archive ADD COLUMN archived_at timestamptz NOT NULL DEFAULT now();

-- The last archived event of each chain: where verification of the remaining rows starts.
CREATE TABLE chain_anchors (
    chain_id    text        PRIMARY KEY,
    seq         bigint      NOT NULL,
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    occurred_at timestamptz NOT NULL,
    archived_at timestamptz NOT NULL DEFAULT now()
);

-- The last head incremental verification proved intact, per chain.
CREATE TABLE chain_checkpoints (
    chain_id    text        PRIMARY KEY,
    seq         bigint      NOT NULL,
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    verified_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credentials (
    credential_id uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id        text        NOT NULL,
    agent_id      text,
    secret_hash   text        NOT NULL,
    vault_path    text,
    status        text        NOT NULL DEFAULT 'active'
                              CHECK (status IN ('active', 'revoked', 'expired', 'rotated')),
    expires_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    rotated_at    timestamptz
);
CREATE INDEX credentials_active_expiry_idx ON credentials (expires_at) WHERE status = 'active';

CREATE TABLE webhook_subscriptions (
    subscription_id   uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id            text        NOT NULL,
    url               text        NOT NULL,
    events            text[]      NOT NULL DEFAULT '{}',
    vault_secret_path text,
    active            boolean     NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE agent_did_keys (
    key_id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    agent_id       text        NOT NULL,
    did            text        NOT NULL,
    vault_key_path text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE webhook_dead_letters (
    dead_letter_id  bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id uuid        REFERENCES webhook_subscriptions ON DELETE SET NULL,
    event_id        uuid,
    payload         jsonb,
    last_error      text,
    attempts        integer     NOT NULL DEFAULT 0,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    resolved_at     timestamptz
);
CREATE INDEX webhook_dead_letters_open_idx ON webhook_dead_letters (failed_at) WHERE resolved_at IS NULL;

-- Control status written by the sidecar's jobs, so every replica serves the same answer.
CREATE TABLE control_status (
    control_id   text        PRIMARY KEY,
    name         text        NOT NULL,
    status       text        NOT NULL CHECK (status IN ('passing', 'failing', 'unknown')),
    last_checked timestamptz NOT NULL,
    detail       jsonb
);
INSERT INTO control_status (control_id, name, status, last_checked) VALUES
    ('CC6.1', 'Encryption at Rest', 'unknown', now()),
    ('CC6.7', 'TLS Enforcement', 'unknown', now()),
    ('CC7.2', 'Audit Log Integrity', 'unknown', now()),
    ('CC9.2', 'Secrets Rotation', 'unknown', now()),
    ('CC7.1', 'Webhook Dead-Letter Monitoring', 'unknown', now());

-- The sidecar's per-client rate-limit windows, shared by its replicas (sidecar/README.md, "HTTP"):
-- one row per route and client, its fixed window reset in place by the request that finds it
-- over, so the table holds the clients of the last window, and each replica DELETEs the expired
-- rows once a window. UNLOGGED: every limited request writes a row, and a window is worth
-- nothing after a crash (the table is emptied then, and is empty on a promoted standby, which
-- only hands every client a fresh window); so no WAL for it, no copy on standbys, and no
-- pg_extension_config_dump: a dump carries the table, never its rows.
CREATE UNLOGGED TABLE api_rate_windows (
    route      text        NOT NULL,
    client_id  text        NOT NULL,
    window_end timestamptz NOT NULL,
    count      integer     NOT NULL CHECK (count >= 0),
    PRIMARY KEY (route, client_id)
);
COMMENT ON TABLE api_rate_windows IS
  'Fixed rate-limit windows of the sidecar, per route and client, shared by its replicas.';

-- Extension tables are left out of pg_dump unless registered; these hold the data itself.
SELECT pg_catalog.pg_extension_config_dump('audit_events', '');
SELECT pg_catalog.pg_extension_config_dump('audit_events_archive', '');
SELECT pg_catalog.pg_extension_config_dump('chain_anchors', '');
SELECT pg_catalog.pg_extension_config_dump('chain_checkpoints', '');
SELECT pg_catalog.pg_extension_config_dump('credentials', '');
SELECT pg_catalog.pg_extension_config_dump('webhook_subscriptions', '');
SELECT pg_catalog.pg_extension_config_dump('agent_did_keys', '');
SELECT pg_catalog.pg_extension_config_dump('webhook_dead_letters', '');
-- Control status is recomputed by the sidecar's first job run; CREATE EXTENSION seeds its rows,
-- so dumping them would collide on restore.
SELECT pg_catalog.pg_extension_config_dump('control_status', 'WHERE false');
