//! Decoding the packed store's 2-bit calls of a set of individuals into an
//! individual-major block of values (a mini-batch), through a 4-entry table
//! per marker.
//!
//! The store is SNP-major: individual i's call at marker j sits in byte
//! j·stride + i/4, bits 2·(i % 4). Per individual, 16 markers at a time,
//! AVX-512 gathers the 16 bytes (one 4-byte load per marker, at a stride of
//! a marker's bytes), shifts out the codes, and looks each up in its
//! marker's table (the 16 tables are 64 consecutive values: two two-vector
//! permutes). Markers are taken in blocks whose bytes stay in L2 while
//! every individual of the batch reads them. [`decode_scalar`] is the
//! reference the fast path is tested against, and runs where the CPU has
//! no AVX-512 or a gather would read past the store.

/// Markers per block: 256 markers of a store of 10,000 individuals are
/// 640 KB, which stay in L2 while the batch's individuals read them.
const BLOCK: usize = 256;
const _: () = assert!(BLOCK.is_multiple_of(16));

/// The store's bytes and layout, as [`decode`] reads them.
pub(crate) struct Store<'a> {
    pub data: &'a [u8],
    /// Bytes per marker.
    pub stride: usize,
}

/// out[b·w + k] = lut[k][code of individual rows[b] at marker snp(k)], for
/// k < w = out.len() / rows.len(), where `snp(k)` is the k-th marker.
pub(crate) fn decode(
    s: &Store<'_>,
    rows: &[usize],
    snp: impl Fn(usize) -> usize,
    lut: &[[f32; 4]],
    out: &mut [f32],
) {
    let w = lut.len();
    assert_eq!(out.len(), rows.len() * w, "output size");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        let cols: Vec<usize> = (0..w).map(&snp).collect();
        // SAFETY: AVX-512F is present; `fast` checks each gather's bytes.
        unsafe { fast(s, rows, &cols, lut, out) };
        return;
    }
    decode_scalar(s, rows, snp, lut, out);
}

/// The reference: one call at a time.
pub(crate) fn decode_scalar(
    s: &Store<'_>,
    rows: &[usize],
    snp: impl Fn(usize) -> usize,
    lut: &[[f32; 4]],
    out: &mut [f32],
) {
    let w = lut.len();
    for (k, t) in lut.iter().enumerate() {
        let row = &s.data[snp(k) * s.stride..][..s.stride];
        for (b, &i) in rows.iter().enumerate() {
            let code = (row[i / 4] >> (2 * (i % 4))) & 3;
            out[b * w + k] = t[code as usize];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fast(s: &Store<'_>, rows: &[usize], cols: &[usize], lut: &[[f32; 4]], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let w = cols.len();
    let lane4 = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60);
    let three = _mm512_set1_epi32(3);
    // Each marker's offset in the store, as the gathers read them.
    let offs: Vec<i64> = cols.iter().map(|&j| (j * s.stride) as i64).collect();
    // A gather loads 4 bytes from each marker's byte: past the store's end
    // only for its last 3 bytes, so only chunks holding a marker that ends
    // there are checked.
    let end = s.data.len();
    let safe = |j: usize| (j + 1) * s.stride + 3 <= end;
    // Whether the 16 markers from 16·q gather (BLOCK is a multiple of 16).
    let whole: Vec<bool> = cols
        .chunks(16)
        .map(|c| c.len() == 16 && c.iter().all(|&j| safe(j)))
        .collect();
    for k0 in (0..w).step_by(BLOCK) {
        let k1 = (k0 + BLOCK).min(w);
        for (b, &i) in rows.iter().enumerate() {
            let shift = _mm_cvtsi32_si128(2 * (i % 4) as i32);
            let byte = i / 4;
            let dst = out.as_mut_ptr().add(b * w);
            let mut k = k0;
            while k < k1 {
                let c = &cols[k..(k + 16).min(k1)];
                if !whole[k / 16] {
                    for (kk, &j) in c.iter().enumerate() {
                        let code = (s.data[j * s.stride + byte] >> (2 * (i % 4))) & 3;
                        *dst.add(k + kk) = lut[k + kk][code as usize];
                    }
                    k += c.len();
                    continue;
                }
                let base = s.data.as_ptr().add(byte);
                let at = |h: usize| _mm512_loadu_si512(offs.as_ptr().add(k + 8 * h) as *const _);
                let lo = _mm512_i64gather_epi32::<1>(at(0), base as *const _);
                let hi = _mm512_i64gather_epi32::<1>(at(1), base as *const _);
                let g = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
                let code = _mm512_and_si512(_mm512_srl_epi32(g, shift), three);
                let idx = _mm512_add_epi32(lane4, code);
                let t = lut.as_ptr().add(k) as *const f32;
                let first =
                    _mm512_permutex2var_ps(_mm512_loadu_ps(t), idx, _mm512_loadu_ps(t.add(16)));
                let second = _mm512_permutex2var_ps(
                    _mm512_loadu_ps(t.add(32)),
                    idx,
                    _mm512_loadu_ps(t.add(48)),
                );
                _mm512_storeu_ps(dst.add(k), _mm512_mask_blend_ps(0xff00, first, second));
                k += 16;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store of n individuals × m markers of pseudo-random bytes (all four
    /// codes, the padding bits too, which no decoder may read as a call).
    fn store(n: usize, m: usize, seed: u64) -> (Vec<u8>, usize) {
        let stride = n.div_ceil(4);
        let mut x = seed | 1;
        let data = (0..stride * m)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        (data, stride)
    }

    /// Distinct values per marker and code, so that a wrong table, entry or
    /// marker shows.
    fn tables(m: usize) -> Vec<[f32; 4]> {
        (0..m)
            .map(|j| std::array::from_fn(|c| (j * 4 + c) as f32 + 0.5))
            .collect()
    }

    /// Individual i's call at marker j, read bit by bit.
    fn naive(data: &[u8], stride: usize, i: usize, j: usize) -> usize {
        let byte = data[j * stride + i / 4];
        (((byte >> (2 * (i % 4))) & 1) | (((byte >> (2 * (i % 4) + 1)) & 1) << 1)) as usize
    }

    /// The gathers against the naive calls: individual counts around a
    /// byte (4 calls), marker counts around a chunk of 16 and a block of
    /// 256, individuals in any order and repeated (the last one, whose
    /// byte ends the store, included), markers as a range from 0 and from
    /// the middle and as a list in any order that holds the last marker (a
    /// 4-byte gather there would read past the store).
    #[test]
    fn gathers_decode_the_calls_of_any_rows_and_markers() {
        for (n, m) in [
            (1, 17),
            (5, 15),
            (8, 16),
            (37, 33),
            (64, 255),
            (65, 257),
            (999, 300),
        ] {
            let (data, stride) = store(n, m, (n * 1000 + m) as u64);
            let s = Store {
                data: &data,
                stride,
            };
            let lut = tables(m);
            let rows: Vec<usize> = (0..n).rev().chain([n - 1, 0, n / 2]).collect();
            let lists: [Vec<usize>; 3] = [
                (0..m).collect(),
                (m / 3..m).collect(),
                (0..m).map(|k| (k * 7 + 3) % m).rev().collect(),
            ];
            for cols in lists {
                let w = cols.len();
                let tab: Vec<[f32; 4]> = cols.iter().map(|&j| lut[j]).collect();
                let mut got = vec![f32::NAN; rows.len() * w];
                decode(&s, &rows, |k| cols[k], &tab, &mut got);
                let mut reference = vec![f32::NAN; rows.len() * w];
                decode_scalar(&s, &rows, |k| cols[k], &tab, &mut reference);
                for (b, &i) in rows.iter().enumerate() {
                    for (k, &j) in cols.iter().enumerate() {
                        let want = lut[j][naive(&data, stride, i, j)];
                        assert_eq!(
                            got[b * w + k],
                            want,
                            "n={n} m={m} individual {i} marker {j}"
                        );
                        assert_eq!(
                            reference[b * w + k],
                            want,
                            "scalar, individual {i} marker {j}"
                        );
                    }
                }
            }
        }
    }
}
