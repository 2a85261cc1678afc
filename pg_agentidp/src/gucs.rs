//! Every setting of the extension, registered from `_PG_init`, read through typed accessors.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// Which chain an event joins.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChainScope {
    /// One chain for the whole table, `global`.
    #[name = c"global"]
    Global,
    /// One chain per organisation, `org:<org_id>`, so that unrelated orgs never wait on one
    /// lock; events without an org stay on `global`.
    #[name = c"org"]
    Org,
}

static CHAIN_SCOPE: GucSetting<ChainScope> = GucSetting::<ChainScope>::new(ChainScope::Global);

pub fn init() {
    // SUSET: the scope decides which chain a row proves its place in; a session must not pick its
    // own. Set it per database (ALTER DATABASE ... SET) or in postgresql.conf.
    GucRegistry::define_enum_guc(
        c"agentidp.chain_scope",
        c"Which audit chain an event joins: global or org.",
        c"global: one chain for all events. org: one chain per org_id, so orgs do not serialize on one lock.",
        &CHAIN_SCOPE,
        GucContext::Suset,
        GucFlags::default(),
    );
}

pub fn chain_scope() -> ChainScope {
    CHAIN_SCOPE.get()
}
