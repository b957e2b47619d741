//! AFL target: the images reader family (see `fuzz::images`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let _ = fuzz::images(data);
    });
}
