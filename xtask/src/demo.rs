//! `cargo xtask demo [args]`: runs the services together on one machine (not implemented
//! yet).

pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("`cargo xtask demo` is not implemented yet")
}
