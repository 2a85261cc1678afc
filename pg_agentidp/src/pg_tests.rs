//! In-database tests of the glue, run by `cargo pgrx test`; each runs in a transaction it rolls back.
//! The module must be named `tests`: the harness calls the functions in that schema.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn insert(action: &str) {
        Spi::run_with_args(
            "INSERT INTO agentidp.audit_events (action, outcome, agent_id, org_id) VALUES ($1, 'success', 'a-1', 'o-1')",
            &[action.into()],
        )
        .expect("insert");
    }

    fn verdict() -> (bool, i64, Option<String>) {
        Spi::get_three::<bool, i64, String>(
            "SELECT verified, checked_count, break_kind FROM agentidp.agentidp_verify_chain()",
        )
        .map(|(v, c, k)| (v.expect("verified"), c.expect("count"), k))
        .expect("verify")
    }

    #[pg_test]
    fn the_trigger_chains_rows_and_ignores_client_chain_columns() {
        Spi::run(
            "INSERT INTO agentidp.audit_events (action, outcome, chain_id, seq, prev_hash, hash)
             VALUES ('login', 'success', 'forged', 99, '\\x00', '\\x01')",
        )
        .expect("insert");
        insert("logout");
        let (seq, chain, linked) = Spi::get_three::<i64, String, bool>(
            "SELECT max(seq), min(chain_id),
                    bool_and(length(hash) = 32 AND (seq = 1 OR prev_hash = (SELECT hash FROM agentidp.audit_events p WHERE p.seq = e.seq - 1)))
               FROM agentidp.audit_events e",
        )
        .expect("select");
        assert_eq!(seq, Some(2));
        assert_eq!(chain.as_deref(), Some("global"));
        assert_eq!(linked, Some(true));
        assert_eq!(verdict(), (true, 2, None));
    }

    #[pg_test]
    fn a_rolled_back_subtransaction_leaves_no_gap() {
        insert("first");
        Spi::run(
            "DO $$ BEGIN
               BEGIN
                 INSERT INTO agentidp.audit_events (action, outcome) VALUES ('doomed', 'success');
                 RAISE EXCEPTION 'roll back the subtransaction';
               EXCEPTION WHEN raise_exception THEN NULL;
               END;
             END $$",
        )
        .expect("do block");
        insert("third");
        let seqs = Spi::get_one::<Vec<i64>>(
            "SELECT array_agg(seq ORDER BY seq) FROM agentidp.audit_events",
        )
        .expect("select");
        assert_eq!(seqs, Some(vec![1, 2]));
        assert_eq!(verdict(), (true, 2, None));
    }

    #[pg_test]
    fn per_org_scope_gives_each_org_its_own_chain() {
        Spi::run("SET LOCAL agentidp.chain_scope = 'org'").expect("set");
        Spi::run(
            "INSERT INTO agentidp.audit_events (action, outcome, org_id) VALUES
               ('a', 'success', 'acme'), ('b', 'success', 'globex'), ('c', 'success', 'acme'), ('d', 'success', NULL)",
        )
        .expect("insert");
        let chains = Spi::get_one::<Vec<String>>(
            "SELECT array_agg(chain_id || '#' || seq ORDER BY chain_id, seq) FROM agentidp.audit_events",
        )
        .expect("select");
        assert_eq!(
            chains,
            Some(vec![
                "global#1".into(),
                "org:acme#1".into(),
                "org:acme#2".into(),
                "org:globex#1".into()
            ])
        );
        assert_eq!(verdict(), (true, 4, None));
    }

    #[pg_test(error = "agentidp.audit_events is append-only: UPDATE is not allowed")]
    fn updates_are_refused() {
        insert("login");
        Spi::run("UPDATE agentidp.audit_events SET outcome = 'failure'").expect("update");
    }

    #[pg_test]
    fn an_edit_made_with_triggers_disabled_is_found() {
        // The tests run in parallel. DISABLE TRIGGER below waits for the table lock of the other
        // tests' inserts, which wait for the chain lock this test's inserts hold: a deadlock.
        // Taking the table lock first makes them wait instead.
        Spi::run("LOCK TABLE agentidp.audit_events IN SHARE ROW EXCLUSIVE MODE").expect("lock");
        insert("one");
        insert("two");
        insert("three");
        Spi::run("ALTER TABLE agentidp.audit_events DISABLE TRIGGER ALL").expect("disable");
        Spi::run("UPDATE agentidp.audit_events SET outcome = 'failure' WHERE seq = 2")
            .expect("edit");
        let (verified, checked, kind) = verdict();
        assert!(!verified);
        assert_eq!(checked, 2);
        assert_eq!(kind.as_deref(), Some("content_edited"));
        let broken = Spi::get_one::<bool>(
            "SELECT broken_at_event_id = (SELECT event_id FROM agentidp.audit_events WHERE seq = 2)
               FROM agentidp.agentidp_verify_chain()",
        )
        .expect("select");
        assert_eq!(broken, Some(true));
    }

    #[pg_test]
    fn the_chain_lock_shows_in_pg_locks_as_an_advisory_lock() {
        insert("login");
        let held = Spi::get_one::<bool>(&format!(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = {} AND objsubid = 2 AND granted)",
            crate::chain_head::LOCK_CLASS
        ))
        .expect("select");
        assert_eq!(held, Some(true));
    }
}
