//! `cargo xtask bench <name> [args]`: runs a named benchmark (not implemented yet).

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`cargo xtask bench` is not implemented yet")
}
