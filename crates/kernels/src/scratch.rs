//! Per-thread scratch buffers, reused from call to call so that the kernels'
//! hot paths do not allocate once warmed up.

use std::cell::RefCell;
use std::thread::LocalKey;

/// A per-thread pool of buffers of `T`.
type Pool<T> = LocalKey<RefCell<Vec<Vec<T>>>>;

thread_local! {
    static POOL: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static WORDS: RefCell<Vec<Vec<u32>>> = const { RefCell::new(Vec::new()) };
    static HALVES: RefCell<Vec<Vec<u16>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a buffer of `len` values from `pool`, whose contents are
/// left from earlier use (the caller writes every element it reads). The
/// buffer is taken out of the pool while `f` runs, so that a nested call on
/// the same thread (rayon may run one while this one waits) gets its own.
fn with_pooled<T: Copy + Default + 'static, R>(
    pool: &'static Pool<T>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    let mut buf = pool.with(|p| p.borrow_mut().pop()).unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, T::default());
    }
    let out = f(&mut buf[..len]);
    pool.with(|p| p.borrow_mut().push(buf));
    out
}

/// Runs `f` with a scratch buffer of `len` floats ([`with_pooled`]).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_pooled(&POOL, len, f)
}

/// Runs `f` with a scratch buffer of `len` 32-bit words ([`with_pooled`]).
pub(crate) fn with_words<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    with_pooled(&WORDS, len, f)
}

/// Runs `f` with a scratch buffer of `len` bf16 values ([`with_pooled`]).
pub(crate) fn with_halves<R>(len: usize, f: impl FnOnce(&mut [u16]) -> R) -> R {
    with_pooled(&HALVES, len, f)
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

/// The `len` values of `buf` from its first 64-byte boundary (a cache
/// line; a tile row of the AMX kernels is then one line, not two): `buf`
/// must hold `len` values and 64 bytes more ([`LINE_SLACK`] bytes).
pub(crate) fn line_aligned<T>(buf: &mut [T], len: usize) -> &mut [T] {
    let skip = buf.as_ptr().align_offset(64).min(buf.len() - len);
    &mut buf[skip..skip + len]
}

/// The bytes of slack [`line_aligned`] needs.
pub(crate) const LINE_SLACK: usize = 64;
