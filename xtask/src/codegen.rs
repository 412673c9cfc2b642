//! `cargo xtask codegen [--check]`: regenerates the committed generated files
//! (dashboards, alert rules, manifests), or with `--check` fails when they are stale.
//!
//! No generated file is declared yet, so both modes only say so.

use anyhow::bail;

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let mut check = false;
    for arg in args {
        match arg.as_str() {
            "--check" => check = true,
            other => {
                bail!("`cargo xtask codegen`: unknown argument `{other}` (expected `--check`)")
            }
        }
    }
    if check {
        println!("codegen: no generated files are declared yet; nothing to check");
    } else {
        println!("codegen: no generated files are declared yet; nothing to generate");
    }
    Ok(())
}
