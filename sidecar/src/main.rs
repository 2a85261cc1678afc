use std::process::ExitCode;

use agentidp_sidecar::settings::LoadError;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // vaultrs reports every failed request at ERROR on its own; the sidecar's classified
            // warning says the same with the retry plan, so the library's copy is off by default.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,vaultrs=off,rustify=off")),
        )
        .init();
    let config = match agentidp_sidecar::settings::from_env() {
        Ok(c) => c,
        Err(LoadError::Print(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(LoadError::Usage(e)) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(LoadError::Invalid(e)) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match agentidp_sidecar::service::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
