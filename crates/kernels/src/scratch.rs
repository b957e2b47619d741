//! Per-thread scratch buffers, reused from call to call so that the kernels'
//! hot paths do not allocate once warmed up.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch buffer of `len` floats whose contents are left
/// from earlier use (the caller writes every element it reads).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    POOL.with(|p| p.borrow_mut().push(buf));
    out
}

/// The sum of a slice, in f32 lanes that the compiler vectorizes, gathered in f64.
pub(crate) fn sum(x: &[f32]) -> f64 {
    let mut total = 0f64;
    for block in x.chunks(4096) {
        let mut acc = [0f32; 16];
        let mut it = block.chunks_exact(16);
        for c in &mut it {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v;
            }
        }
        total += acc.iter().map(|&v| v as f64).sum::<f64>()
            + it.remainder().iter().map(|&v| v as f64).sum::<f64>();
    }
    total
}
