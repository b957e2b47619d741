//! Per-thread scratch buffers, reused from call to call so that the kernels'
//! hot paths do not allocate once warmed up.

use std::cell::RefCell;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a zero-filled scratch buffer of `len` floats.
pub(crate) fn with_zeroed<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    buf.clear();
    buf.resize(len, 0.0);
    let out = f(&mut buf);
    POOL.with(|p| p.borrow_mut().push(buf));
    out
}
