//! Genotype and phenotype input for genocnn.
//!
//! Genotype files (PLINK 1 binary, PLINK `.raw`, delimited dosage matrices)
//! are read into [`PackedGenotypes`], a 2-bit SNP-major store that is decoded
//! to `f32` block by block. Phenotype tables are joined by ID or aligned by
//! row ([`PhenoTable`]). [`run_qc`] computes PLINK-style QC, and
//! [`simulate()`] makes data sets with LD and non-additive genetic variance.

pub mod delim;
pub mod error;
pub mod packed;
pub mod pheno;
pub mod plink;
pub mod qc;
pub mod simulate;
pub mod source;
pub mod textio;

pub use delim::DelimitedOptions;
pub use error::{GenoError, Result};
pub use packed::{GenoCounts, Individual, Marker, PackedGenotypes, Standardizer};
pub use pheno::{PhenoLayout, PhenoTable, Trait, TraitSelector};
pub use plink::{read_plink, write_plink, PlinkPaths};
pub use qc::{run_qc, QcFilters, QcReport};
pub use simulate::{
    correlated_traits, independent_uniform, simulate, CorrelatedTrait, SimParams, Simulation,
};
pub use source::{write_genotypes, GenoFormat, GenoReader};
pub use textio::{write_atomic, AtomicFile, Delimiter};
