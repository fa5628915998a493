//! Placeholder: `agentic model run`, filled in by the models work.

use clap::Subcommand;

#[derive(Subcommand)]
pub enum Model {
    /// Run a model locally: output, metered operations, trace root.
    Run(RunArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(model: Model) -> anyhow::Result<()> {
    match model {
        Model::Run(_args) => anyhow::bail!("not built yet"),
    }
}
