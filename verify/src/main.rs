//! `agentidp-verify`: checks pg_agentidp evidence offline. See README.md for the bundle, the
//! subcommands, the exit statuses and the `FAIL: ` line.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use agentidp_verify::bundle::{self, Bundle};
use agentidp_verify::failure::{Stop, EXIT_FAILED, EXIT_UNUSABLE};
use agentidp_verify::proofs::{self, Consistency, Inclusion};
use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "agentidp-verify",
    version,
    about = "Checks pg_agentidp evidence offline: exit 0 if it holds, 1 if it does not (one \
             `FAIL: ` line on stderr), 2 if it could not be read"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// An export of one chain and the checkpoints signed over it.
    Bundle(BundleArgs),
    /// One event's inclusion proof against a signed checkpoint.
    Proof(ProofArgs),
    /// A consistency proof between two signed checkpoints.
    Consistency(ConsistencyArgs),
}

#[derive(Debug, Args)]
struct LogKeyArgs {
    /// The log's note verifier key, `<name>+<hex key id>+<base64 key>`; repeat for several.
    /// A checkpoint must be signed by one of them.
    #[arg(long = "key", value_name = "VKEY", required = true)]
    keys: Vec<String>,
}

#[derive(Debug, Args)]
struct BundleArgs {
    /// The export: one JSON event line per event of one chain, in seq order from 1.
    #[arg(long, value_name = "FILE.jsonl")]
    events: PathBuf,
    /// A signed checkpoint note; repeat for several.
    #[arg(long = "checkpoint", value_name = "NOTE_FILE", required = true)]
    checkpoints: Vec<PathBuf>,
    #[command(flatten)]
    keys: LogKeyArgs,
    /// A witness's cosignature/v1 verifier key; repeat for several. Every cosignature by one of
    /// them must verify.
    #[arg(long = "witness-key", value_name = "VKEY")]
    witness_keys: Vec<String>,
    /// How many of the witnesses must have cosigned every checkpoint.
    #[arg(long, value_name = "N", default_value_t = 0)]
    quorum: usize,
    /// The log's tiles (`tile/8/<L>/<N>[.p/<W>]` under DIR), to name the first rewritten event
    /// when a checkpoint's root is not the export's.
    #[arg(long, value_name = "DIR")]
    tiles: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ProofArgs {
    /// A file holding the event's line, as in an export.
    #[arg(long, value_name = "LINE_FILE")]
    event: PathBuf,
    /// The inclusion proof, `{"leaf_index":N,"tree_size":S,"proof":["<base64>",...]}`.
    #[arg(long, value_name = "PROOF_FILE")]
    proof: PathBuf,
    /// The signed checkpoint note the proof is against.
    #[arg(long, value_name = "NOTE_FILE")]
    checkpoint: PathBuf,
    #[command(flatten)]
    keys: LogKeyArgs,
}

#[derive(Debug, Args)]
struct ConsistencyArgs {
    /// The earlier signed checkpoint note.
    #[arg(long, value_name = "NOTE_FILE")]
    old: PathBuf,
    /// The later signed checkpoint note.
    #[arg(long, value_name = "NOTE_FILE")]
    new: PathBuf,
    /// The consistency proof, `{"old_size":M,"new_size":N,"proof":["<base64>",...]}`.
    #[arg(long, value_name = "PROOF_FILE")]
    proof: PathBuf,
    #[command(flatten)]
    keys: LogKeyArgs,
}

fn main() -> ExitCode {
    let mut report = Vec::new();
    let outcome = match Cli::parse().command {
        Command::Bundle(args) => bundle::verify(
            &Bundle {
                events: args.events,
                checkpoints: args.checkpoints,
                keys: args.keys.keys,
                witness_keys: args.witness_keys,
                quorum: args.quorum,
                tiles: args.tiles,
            },
            &mut report,
        ),
        Command::Proof(args) => proofs::verify_inclusion(
            &Inclusion {
                event: args.event,
                proof: args.proof,
                checkpoint: args.checkpoint,
                keys: args.keys.keys,
            },
            &mut report,
        ),
        Command::Consistency(args) => proofs::verify_consistency(
            &Consistency {
                old: args.old,
                new: args.new,
                proof: args.proof,
                keys: args.keys.keys,
            },
            &mut report,
        ),
    };
    // A closed stdout (`| head`) must not turn a verdict into a panic: the exit status is it.
    let mut stdout = std::io::stdout().lock();
    for line in &report {
        let _ = writeln!(stdout, "{line}");
    }
    match outcome {
        Ok(()) => {
            let _ = writeln!(stdout, "OK");
            ExitCode::SUCCESS
        }
        Err(Stop::Failed(failure)) => {
            eprintln!("FAIL: {failure}");
            ExitCode::from(EXIT_FAILED)
        }
        Err(Stop::Unusable(unusable)) => {
            eprintln!("error: {unusable}");
            ExitCode::from(EXIT_UNUSABLE)
        }
    }
}
