//! What each `kagi` command does. This is the binary's edge, so errors are `anyhow`; errors that
//! came from the service keep their stable code (see `main::report`).
//!
//! One module per command family; `output` holds what several of them print with.

use anyhow::Result;

use crate::cli::{Cli, Command};

mod approvals;
mod audit;
mod backup;
mod ca;
mod custodians;
mod identities;
mod init;
mod keys;
mod output;
mod policies;
mod serve;
mod sign;
mod status;
mod witness;

pub use output::{json_mode, PendingApproval};

pub fn run(cli: Cli) -> Result<()> {
    output::set_format(cli.output);
    match cli.command {
        Command::Serve(args) => serve::serve(&args),
        Command::Init(args) => init::init(&args),
        Command::Unseal(args) => init::unseal(&args),
        Command::Admin(crate::cli::AdminCommand::Recover(args)) => init::recover(&args),
        Command::Key(cmd) => keys::key(cmd),
        Command::Sign(args) => sign::sign(&args),
        Command::Audit(cmd) => audit::audit(cmd),
        Command::Credential(cmd) => identities::credential(cmd),
        Command::Partition(cmd) => identities::partition(cmd),
        Command::Identity(cmd) => identities::identity(cmd),
        Command::Policy(cmd) => policies::policy_cmd(cmd),
        Command::Approval(cmd) => approvals::approval(cmd),
        Command::Ca(cmd) => ca::run(cmd),
        Command::Log(cmd) => crate::log_cli::run(cmd),
        Command::Verify(args) => crate::verify_cli::run(&args),
        Command::Backup(args) => backup::backup(&args),
        Command::Status => status::status(),
        Command::RecoverRollback { reason } => status::recover_rollback(&reason),
        Command::Witness(cmd) => witness::run(cmd),
    }
}
