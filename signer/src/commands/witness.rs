//! `kagi witness init|key|serve|status|forget`: a C2SP tlog-witness in its own process and data
//! folder (see `crate::witness`).

use std::io::Write;

use anyhow::{bail, Result};

use crate::cli::WitnessCommand;
use crate::witness::{self, Witness};

pub fn run(cmd: WitnessCommand) -> Result<()> {
    match cmd {
        WitnessCommand::Init { data, name } => {
            let vkey = witness::init(&data, &name)?;
            println!("{vkey}");
            eprintln!(
                "witness '{name}' made in {}: give logs the key above; start it with 'kagi witness serve --data {} --log <log verifier key>'",
                data.display(),
                data.display()
            );
            Ok(())
        }
        WitnessCommand::Key { data } => {
            println!("{}", Witness::open(&data)?.verifier_key()?);
            Ok(())
        }
        WitnessCommand::Status { data } => {
            let w = Witness::open(&data)?;
            for s in w.states()? {
                println!(
                    "{} {} {}",
                    s.origin,
                    s.size,
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &s.root)
                );
            }
            Ok(())
        }
        WitnessCommand::Forget { data, origin } => {
            let w = Witness::open(&data)?;
            match w.forget(&origin)? {
                Some(s) => {
                    println!(
                        "forgot {} at size {} (root {}); its next checkpoint is taken as new",
                        s.origin,
                        s.size,
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &s.root)
                    );
                    Ok(())
                }
                None => {
                    let known: Vec<String> = w.states()?.into_iter().map(|s| s.origin).collect();
                    bail!(
                        "this witness saved nothing for origin '{origin}' (it has: {}); check the origin, the first line of the log's checkpoints",
                        if known.is_empty() { "none".to_string() } else { known.join(", ") }
                    )
                }
            }
        }
        WitnessCommand::Serve(args) => {
            let mut w = Witness::open(&args.data)?;
            for vkey in &args.logs {
                w.add_log(vkey)?;
            }
            w.add_logs_file(&args.data)?;
            if w.origins().is_empty() {
                bail!(
                    "no log to witness: pass --log <the log's verifier key> (kagi's is what GET /log/key answers), or list the keys in {}",
                    witness::logs_path(&args.data).display()
                );
            }
            let vkey = w.verifier_key()?;
            let origins = w.origins().join(", ");
            witness::server::serve(w, &args.listen, |addrs| {
                let shown: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
                println!(
                    "kagi witness listening on {} (plain HTTP) with verifier key {vkey}; witnessing {origins}",
                    shown.join(", ")
                );
                let _ = std::io::stdout().flush();
            })
        }
    }
}
