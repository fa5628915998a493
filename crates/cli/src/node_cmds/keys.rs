//! `agentic keys`: create and inspect key files (see `agentic_client::keystore`).
//!
//! A key file holds an ed25519 secret; `new` creates it with mode 0600 and never
//! overwrites an existing file, `show` prints the name, public key and ledger
//! address and never the secret.

use std::path::{Path, PathBuf};

use agentic_client::keystore::KeyFile;
use agentic_protocol::hex;
use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

#[derive(Subcommand)]
pub enum Keys {
    /// Generate a new ed25519 key file (mode 0600; refuses to overwrite a file).
    New {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// A label for humans (default: the file name without extension).
        #[arg(long)]
        name: Option<String>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key file's name, public key and address (never the secret).
    Show {
        /// The key file.
        file: PathBuf,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: Keys) -> anyhow::Result<()> {
    match cmd {
        Keys::New { out, name, json } => {
            let name = name.unwrap_or_else(|| {
                out.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            });
            let key = KeyFile::generate(name);
            key.write_new(&out)?;
            print(&key, &out, json, "created");
            Ok(())
        }
        Keys::Show { file, json } => {
            let key = KeyFile::read(&file)
                .with_context(|| format!("cannot use key file {}", file.display()))?;
            print(&key, &file, json, "key file");
            Ok(())
        }
    }
}

fn print(key: &KeyFile, path: &Path, as_json: bool, what: &str) {
    let public = hex::encode(key.public_key().as_ref());
    let address = hex::encode(&key.address().0);
    if as_json {
        println!(
            "{}",
            json!({
                "file": path.display().to_string(),
                "name": key.name,
                "public_key": public,
                "address": address,
                "validator_share": key.bls_share.is_some(),
            })
        );
    } else {
        println!("{what} {}", path.display());
        println!("name        {}", key.name);
        println!("public key  {public}");
        println!("address     {address}");
        if key.bls_share.is_some() {
            println!("holds a validator's BLS share");
        }
    }
}
