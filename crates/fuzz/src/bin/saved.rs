//! AFL target: the saved reader family (see `fuzz::saved`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::saved(data);
    });
}
