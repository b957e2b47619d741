//! AFL target: the VCF/BCF reader family (see `fuzz::vcf`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::vcf(data);
    });
}
