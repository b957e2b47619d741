//! AFL target: the raw reader family (see `fuzz::raw`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::raw(data);
    });
}
