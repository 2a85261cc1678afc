-- Retention archives the oldest events and anchors the chain at the last one moved.
BEGIN;
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome)
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid,
       '2026-01-01Z'::timestamptz + i * interval '1 day', 'event.' || i, 'success'
  FROM generate_series(1, 10) i;
CREATE TEMP TABLE archived AS SELECT * FROM agentidp.agentidp_archive_events('2026-01-05Z');
SELECT chain_id, archived_count, boundary_seq,
       boundary_hash = (SELECT hash FROM agentidp.audit_events_archive WHERE seq = 3) AS boundary_is_event_3
  FROM archived;
SELECT min(seq), max(seq), count(*) FROM agentidp.audit_events;
SELECT min(seq), max(seq), count(*) FROM agentidp.audit_events_archive;
SELECT chain_id, seq FROM agentidp.chain_anchors;
SELECT * FROM agentidp.agentidp_verify_chain();
-- Archiving again with the same bound moves nothing.
SELECT * FROM agentidp.agentidp_archive_events('2026-01-05Z');
-- New events chain on; archiving everything leaves the anchor as the head.
INSERT INTO agentidp.audit_events (action, outcome, occurred_at) VALUES ('new', 'success', '2026-01-20Z');
SELECT chain_id, archived_count, boundary_seq FROM agentidp.agentidp_archive_events('2027-01-01Z');
INSERT INTO agentidp.audit_events (action, outcome) VALUES ('after all archived', 'success');
SELECT seq, prev_hash = (SELECT hash FROM agentidp.chain_anchors) AS linked_to_anchor
  FROM agentidp.audit_events;
SELECT * FROM agentidp.agentidp_verify_chain();
-- Digests taken before archiving still verify against the archive.
SELECT verified, break_kind
  FROM agentidp.audit_events_archive a, agentidp.agentidp_verify_digest(a.chain_id, a.seq, a.hash)
 WHERE a.seq = 3;
ROLLBACK;

BEGIN;
-- A broken chain is not archived: the evidence stays where the investigation needs it.
INSERT INTO agentidp.audit_events (event_id, action, outcome, occurred_at)
SELECT ('00000000-0000-0000-0000-00000000000' || i)::uuid, 'event.' || i, 'success',
       '2026-01-01Z'::timestamptz + i * interval '1 day'
  FROM generate_series(1, 5) i;
ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL;
UPDATE agentidp.audit_events SET outcome = 'failure' WHERE seq = 2;
SELECT * FROM agentidp.agentidp_archive_events('2027-01-01Z');
ROLLBACK;

BEGIN;
-- Migration: an existing AgentIdP table of unchained events joins the chain in time order, in
-- one statement (docs/audit-log-runbook.md, "Migrating existing events").
CREATE TABLE public.legacy_audit_events (
  id uuid PRIMARY KEY, "timestamp" timestamptz, action text, outcome text,
  agent_id text, org_id text, metadata jsonb, hash text, previous_hash text);
INSERT INTO public.legacy_audit_events
SELECT ('00000000-0000-0000-0000-0000000000' || lpad(i::text, 2, '0'))::uuid,
       '2025-06-01Z'::timestamptz + ((i * 7) % 10) * interval '1 hour',
       'legacy.' || i, 'success', 'agent-' || i, 'org-1', jsonb_build_object('i', i), 'old', 'old'
  FROM generate_series(1, 10) i;
INSERT INTO agentidp.audit_events (event_id, occurred_at, action, outcome, agent_id, org_id, metadata)
SELECT id, "timestamp", action, outcome, agent_id, org_id, metadata
  FROM public.legacy_audit_events ORDER BY "timestamp", id;
SELECT bool_and(a.occurred_at <= b.occurred_at) AS in_time_order, count(*) AS pairs
  FROM agentidp.audit_events a JOIN agentidp.audit_events b ON b.seq = a.seq + 1;
SELECT * FROM agentidp.agentidp_verify_chain();
ROLLBACK;
