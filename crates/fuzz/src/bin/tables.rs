//! AFL target: the tables reader family (see `fuzz::tables`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::tables(data);
    });
}
