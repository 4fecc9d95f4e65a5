//! `admin`: the operator CLI for API clients and signing keys (SPEC §6).
//!
//! ```text
//! admin client create --name NAME [--tier free|premium] [--scopes "predict predict:proba"] [--json]
//! admin client list [--json]
//! admin client disable ID | enable ID
//! admin client rotate-secret ID [--json]
//! admin keys generate [--force] | rotate | revoke KID | publish | jwks
//! admin config vars [--program predict|token|admin]... [--platform] [--json]
//! ```
//!
//! Configuration comes from the same variables the functions read (`admin config vars --program
//! admin` lists them): `CLIENTS_TABLE`, `RATE_LIMIT_TABLE` (its `jwks` item is the public key
//! set), `TOKEN_LIFETIME_SECONDS`, and `SIGNING_KEYS_SECRET_ID` (AWS) or `SIGNING_KEYS_FILE`
//! (local). DynamoDB Local is reached through
//! `AWS_ENDPOINT_URL_DYNAMODB`, which the SDK honours natively. A client secret is printed only
//! by `client create` and `client rotate-secret`, once.

mod client;
mod config;
mod error;
mod keys;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secure_ml_core::auth::Tier;
use secure_ml_core::config::{Program, Vars};

use crate::error::AdminError;

#[derive(Debug, Parser)]
#[command(
    name = "admin",
    version,
    about = "Manage secure-ml-api clients and token-signing keys."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, disable, enable API clients and rotate their secrets.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Generate and rotate the token-signing key set; print the public JWKS.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The configuration contract: every variable the functions and this tool read.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// List the variables a program reads (all of them without --program).
    Vars {
        /// predict, token or admin; repeat for the union.
        #[arg(long = "program")]
        programs: Vec<Program>,
        /// Also list what Lambda itself sets (region, credentials).
        #[arg(long)]
        platform: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Create a client and print its id and secret (the secret is shown only here).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "free")]
        tier: Tier,
        /// Space-separated scopes: predict, predict:proba.
        #[arg(long, default_value = "predict")]
        scopes: String,
        #[arg(long)]
        json: bool,
    },
    /// List clients (never secrets or hashes).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Disable a client: it gets invalid_client from then on.
    Disable { id: String },
    /// Re-enable a disabled client.
    Enable { id: String },
    /// Replace a client's secret; the old one stops working at once.
    RotateSecret {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the signing key set (refuses to replace an existing one without --force).
    Generate {
        #[arg(long)]
        force: bool,
    },
    /// Add a new active key; older keys keep verifying until their tokens have expired.
    Rotate,
    /// Remove a (compromised) key at once; a fresh key becomes active.
    Revoke { kid: String },
    /// Write the public JWKS of the current key set again (e.g. into a fresh DynamoDB Local).
    Publish,
    /// Print the public JWKS of the current key set.
    Jwks,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let vars = Vars::from_env();
    let mut stdout = std::io::stdout().lock();
    match run(cli, &vars, &mut stdout).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, vars: &Vars, out: &mut impl Write) -> Result<(), AdminError> {
    match cli.command {
        Command::Client(command) => {
            let registry = client::registry(vars).await?;
            match command {
                ClientCommand::Create {
                    name,
                    tier,
                    scopes,
                    json,
                } => client::create(&registry, &name, tier, &scopes, json, out).await,
                ClientCommand::List { json } => client::list(&registry, json, out).await,
                ClientCommand::Disable { id } => {
                    client::set_enabled(&registry, &id, false, out).await
                }
                ClientCommand::Enable { id } => {
                    client::set_enabled(&registry, &id, true, out).await
                }
                ClientCommand::RotateSecret { id, json } => {
                    client::rotate_secret(&registry, &id, json, out).await
                }
            }
        }
        Command::Keys(command) => {
            let stores = keys::Stores::from_vars(vars).await?;
            match command {
                KeysCommand::Generate { force } => keys::generate(&stores, force, out).await,
                KeysCommand::Rotate => keys::rotate(&stores, out).await,
                KeysCommand::Revoke { kid } => keys::revoke(&stores, &kid, out).await,
                KeysCommand::Publish => keys::publish(&stores, out).await,
                KeysCommand::Jwks => keys::jwks(&stores, out).await,
            }
        }
        Command::Config(ConfigCommand::Vars {
            programs,
            platform,
            json,
        }) => config::vars(&programs, platform, json, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn create_parses_spec_arguments_with_defaults() {
        let cli = Cli::try_parse_from(["admin", "client", "create", "--name", "acme"]).unwrap();
        let Command::Client(ClientCommand::Create {
            name,
            tier,
            scopes,
            json,
        }) = cli.command
        else {
            panic!("expected client create");
        };
        assert_eq!(
            (name.as_str(), tier, scopes.as_str(), json),
            ("acme", Tier::Free, "predict", false)
        );

        let cli = Cli::try_parse_from([
            "admin",
            "client",
            "create",
            "--name",
            "acme",
            "--tier",
            "premium",
            "--scopes",
            "predict predict:proba",
            "--json",
        ])
        .unwrap();
        let Command::Client(ClientCommand::Create {
            tier, scopes, json, ..
        }) = cli.command
        else {
            panic!("expected client create");
        };
        assert_eq!(
            (tier, scopes.as_str(), json),
            (Tier::Premium, "predict predict:proba", true)
        );
    }

    #[test]
    fn unknown_tier_is_a_usage_error() {
        assert!(
            Cli::try_parse_from(["admin", "client", "create", "--name", "a", "--tier", "gold"])
                .is_err()
        );
    }

    #[test]
    fn every_spec_command_parses() {
        for args in [
            vec!["admin", "client", "list", "--json"],
            vec!["admin", "client", "disable", "cl_1"],
            vec!["admin", "client", "enable", "cl_1"],
            vec!["admin", "client", "rotate-secret", "cl_1", "--json"],
            vec!["admin", "keys", "generate", "--force"],
            vec!["admin", "keys", "rotate"],
            vec!["admin", "keys", "jwks"],
        ] {
            assert!(Cli::try_parse_from(&args).is_ok(), "{args:?}");
        }
    }
}
