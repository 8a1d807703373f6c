//! `enclave users` and `enclave keys`: who may use the server.

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use enclave_server::Role;
use enclave_settings::Settings;

use crate::app;

#[derive(Debug, Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Add a person who signs in to the web UI. Without --password-stdin, a random password
    /// is generated and printed.
    Add {
        name: String,
        /// reader (search, ask), editor (also change documents) or admin.
        #[arg(long, default_value = "reader")]
        role: Role,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (from standard input, or a random one that is printed).
    Password {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create an API key for /api/v1 and /v1. The key is printed once; only its hash is kept.
    Create {
        name: String,
        /// reader (search, ask), editor (also change documents) or admin.
        #[arg(long, default_value = "reader")]
        role: Role,
    },
    /// List keys (prefix, name, role, revoked).
    List,
    /// Revoke a key by id or prefix.
    Revoke { key: String },
}

fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok((line.trim_end_matches(['\r', '\n']).to_string(), false))
    } else {
        Ok((enclave_server::auth::new_password(), true))
    }
}

pub async fn users(settings: &Settings, args: UsersArgs) -> anyhow::Result<ExitCode> {
    let meta = app::meta_store(settings).await?;
    match args.command {
        UsersCommand::Add {
            name,
            role,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            enclave_server::auth::add_user(&meta, &name, &pw, role)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if generated {
                println!("added {name} ({}) with password {pw}", role.as_str());
            } else {
                println!("added {name} ({})", role.as_str());
            }
        }
        UsersCommand::Password {
            name,
            password_stdin,
        } => {
            let (pw, generated) = password(password_stdin)?;
            if pw.len() < 8 {
                anyhow::bail!("a password needs at least 8 characters");
            }
            let hash =
                enclave_server::auth::hash_password(&pw).map_err(|e| anyhow::anyhow!("{e}"))?;
            meta.set_password(&name, &hash).await?;
            if generated {
                println!("new password for {name}: {pw}");
            } else {
                println!("password of {name} changed");
            }
        }
    }
    meta.close().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn keys(settings: &Settings, args: KeysArgs) -> anyhow::Result<ExitCode> {
    let meta = app::meta_store(settings).await?;
    let code = match args.command {
        KeysCommand::Create { name, role } => {
            let (key, prefix, hash) = enclave_server::auth::new_api_key();
            meta.create_api_key(&name, &prefix, &hash, role.as_str())
                .await?;
            eprintln!(
                "created the {} key '{name}' ({prefix}…); it is shown only now:",
                role.as_str()
            );
            println!("{key}");
            ExitCode::SUCCESS
        }
        KeysCommand::List => {
            for k in meta.api_keys().await? {
                let state = k
                    .revoked_at
                    .as_deref()
                    .map_or_else(|| "active".to_string(), |t| format!("revoked {t}"));
                println!(
                    "{}…  {:<20} {:<7} {}  {}",
                    k.prefix, k.name, k.role, k.created_at, state
                );
            }
            ExitCode::SUCCESS
        }
        KeysCommand::Revoke { key } => {
            let n = meta.revoke_api_key(&key).await?;
            if n == 0 {
                eprintln!("no active key with id or prefix '{key}'");
                ExitCode::FAILURE
            } else {
                println!("revoked {n} key(s)");
                ExitCode::SUCCESS
            }
        }
    };
    meta.close().await;
    Ok(code)
}
