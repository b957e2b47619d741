//! AFL target: the specs reader family (see `fuzz::specs`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::specs(data);
    });
}
