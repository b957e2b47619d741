//! `genocnn convert`

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::output::spinner;
use super::GenoArgs;

#[derive(Args, Debug)]
pub struct ConvertArgs {
    #[command(flatten)]
    pub geno: GenoArgs,
    /// Output file; its extension picks the format: .bed (with .bim/.fam), .raw, .csv, .tsv or .txt.
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let pb = spinner(format!("reading {}", a.geno.geno.display()));
    let g = a.geno.load()?;
    pb.set_message(format!("writing {}", a.out.display()));
    geno::write_genotypes(&g, &a.out)?;
    pb.finish_and_clear();
    println!(
        "wrote {} individuals × {} markers to {}",
        g.n_individuals(),
        g.n_markers(),
        a.out.display()
    );
    Ok(())
}
