-- An auditor's check with no code of ours: the runbook's encoding, in plain SQL over sha256(),
-- recomputes every stored hash.
BEGIN;
CREATE FUNCTION pg_temp.frame(b bytea) RETURNS bytea LANGUAGE sql IMMUTABLE AS
$$ SELECT CASE WHEN b IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(b)) || b END $$;
INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id, metadata) VALUES
  ('agent.token.issued', 'success', 'agent-42', 'org-7', '{"ip": "10.0.0.1", "scopes": ["audit:read"]}'),
  ('agent.login', 'failure', NULL, NULL, NULL),
  ('ünïcødé ✓', '', '', '', '{}');
SELECT seq, sha256(
         pg_temp.frame('agentidp.audit_event.v1'::bytea)
      || pg_temp.frame(convert_to(chain_id, 'UTF8'))
      || pg_temp.frame(int8send(seq))
      || pg_temp.frame(prev_hash)
      || pg_temp.frame(uuid_send(event_id))
      || pg_temp.frame(int8send((extract(epoch FROM occurred_at) * 1000000)::bigint))
      || pg_temp.frame(convert_to(action, 'UTF8'))
      || pg_temp.frame(convert_to(outcome, 'UTF8'))
      || pg_temp.frame(convert_to(agent_id, 'UTF8'))
      || pg_temp.frame(convert_to(org_id, 'UTF8'))
      || pg_temp.frame(convert_to(metadata::text, 'UTF8'))
       ) = hash AS recomputed
  FROM agentidp.audit_events ORDER BY seq;
ROLLBACK;
