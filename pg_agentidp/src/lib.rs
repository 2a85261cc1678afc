//! pg_agentidp: AgentIdP's tamper-evident audit chain, inside PostgreSQL.
//!
//! This crate is glue: the chain's encoding and verification rules live in `agentidp-core`.

use pgrx::prelude::*;

mod append_only;
mod chain_head;
mod chain_rows;
mod chain_trigger;
mod checkpoints;
mod citus;
mod column_triggers;
mod ddl_guard;
mod distribution;
mod encryption;
mod error;
mod event_scan;
mod events_relation;
mod export;
mod gucs;
mod hash_thread;
mod insert_routing;
mod keys;
mod positions;
mod proofs;
mod reencrypt;
mod retention;
mod row_reader;
mod sealer;
mod signed_checkpoints;
mod spi;
mod spi_chain_scan;
mod tile_table;
mod verify;
mod walk;
mod worker_options;

pgrx::pg_module_magic!(name, version);

pgrx::extension_sql_file!("../../sql/schema.sql", name = "schema", bootstrap);
pgrx::extension_sql_file!("../../sql/triggers.sql", name = "triggers", finalize);
pgrx::extension_sql_file!(
    "../../sql/ddl_guard.sql",
    name = "ddl_guard",
    requires = ["schema"]
);
pgrx::extension_sql_file!(
    "../../sql/transparency.sql",
    name = "transparency",
    // ddl_guard too, though nothing here needs it: two SQL files that require the same entities
    // only are put in either order, and the install script must come out the same every build
    // (the package's checksums are of one build, the installed file of another).
    requires = ["schema", "ddl_guard"]
);
pgrx::extension_sql_file!(
    "../../sql/citus.sql",
    name = "citus",
    // transparency too: see above; the tables it distributes are all created by then.
    requires = [
        "schema",
        "ddl_guard",
        "transparency",
        distribution::agentidp_chain_of
    ]
);
pgrx::extension_sql_file!(
    "../../sql/encryption.sql",
    name = "encryption",
    requires = [
        column_triggers::agentidp_encrypt_columns,
        encryption::agentidp_encrypted_format,
        reencrypt::agentidp_key_state,
        reencrypt::agentidp_needs_reencryption,
        reencrypt::agentidp_reencrypt_value
    ]
);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    keys::defining(|| {
        gucs::init(gucs::KeyHooks {
            check_key: Some(keys::check_key),
            check_old_keys: Some(keys::check_old_keys),
            assign_key: Some(keys::assign_key),
            assign_old_keys: Some(keys::assign_old_keys),
            show_key: Some(keys::show_key),
            show_old_keys: Some(keys::show_old_keys),
        })
    });
    chain_head::init();
    ddl_guard::init();
    insert_routing::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
