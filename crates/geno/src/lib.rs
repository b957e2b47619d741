//! Genotype and phenotype input for genocnn.
//!
//! Genotype files (PLINK 1 binary, PLINK `.raw`, delimited dosage matrices,
//! VCF and BCF)
//! are read into [`PackedGenotypes`], a 2-bit SNP-major store that is decoded
//! to `f32` block by block. Phenotype tables are joined by ID or aligned by
//! row ([`PhenoTable`]). [`run_qc`] computes PLINK-style QC, and
//! [`simulate()`] makes data sets with LD and non-additive genetic variance.

mod decode;
pub mod delim;
pub mod error;
pub mod packed;
pub mod pheno;
pub mod plink;
pub mod qc;
pub mod select;
pub mod simulate;
pub mod source;
pub mod textio;
pub mod vcf;

pub use delim::DelimitedOptions;
pub use error::{GenoError, Result};
pub use packed::{GenoCounts, Individual, Marker, PackedGenotypes, Standardizer};
pub use pheno::{PhenoLayout, PhenoTable, Trait, TraitSelector};
pub use plink::{read_plink, read_plink_selected, write_plink, PlinkBlocks, PlinkPaths};
pub use qc::{individual_qc, marker_qc, run_qc, IndividualQc, MarkerQc, QcFilters, QcReport};
pub use select::{Chosen, ExtractList, KeepList, Matched, Selection};
pub use simulate::{
    correlated_traits, independent_uniform, simulate, CorrelatedTrait, SimParams, Simulation,
};
pub use source::{write_genotypes, GenoFormat, GenoReader, ReadSummary};
pub use textio::{write_atomic, AtomicFile, Delimiter};
pub use vcf::{read_vcf, HaploidCalls, VcfAt, VcfField, VcfOptions, VcfSummary};

/// A fast, non-cryptographic hasher (FxHash's multiply-rotate, as rustc
/// uses) for the ID tables of the readers: a fileset of 358,499 markers
/// spent 11% of `qc` in SipHash checking that marker IDs are unique. IDs
/// come from the user's own files, so hash flooding is not a concern.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }

    #[inline]
    fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    /// The multiply leaves the high bytes of the last word only in the high
    /// bits, and the table indexes by the low ones: a finalizer (MurmurHash3's)
    /// spreads them, or IDs such as `m000123`/`m000124` collide.
    #[inline]
    fn finish(&self) -> u64 {
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^ (h >> 33)
    }
}

/// [`FxHasher`] as a `HashMap`'s hasher.
pub type FastHash = std::hash::BuildHasherDefault<FxHasher>;
