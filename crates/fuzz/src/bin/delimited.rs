//! AFL target: the delimited reader family (see `fuzz::delimited`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::delimited(data);
    });
}
