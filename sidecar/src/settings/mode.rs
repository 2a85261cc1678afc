//! Production or development: `AGENTIDP_PRODUCTION`, else `NODE_ENV`.

use clap::Args;

use super::parse::boolean;

#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Production switch")]
pub struct ModeSettings {
    /// true/false (also 1/0, yes/no, on/off). When unset, NODE_ENV=production means production.
    /// Production turns on the HTTPS redirect and demands a key source, https:// Vault and TLS
    /// to the database.
    #[arg(long, env = "AGENTIDP_PRODUCTION", value_name = "BOOL", value_parser = boolean)]
    pub agentidp_production: Option<bool>,

    /// Consulted only when AGENTIDP_PRODUCTION is unset: "production" turns production mode on.
    #[arg(long, env = "NODE_ENV", value_name = "ENV")]
    pub node_env: Option<String>,
}

impl ModeSettings {
    /// AGENTIDP_PRODUCTION wins so that a deployment can be explicit regardless of NODE_ENV,
    /// which the platform's Node services share.
    pub fn production(&self) -> bool {
        match self.agentidp_production {
            Some(p) => p,
            None => self.node_env.as_deref() == Some("production"),
        }
    }
}
