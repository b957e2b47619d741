//! AFL target: the plink reader family (see `fuzz::plink`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::plink(data);
    });
}
