//! Genomic relationship matrices from the packed store.
//!
//! VanRaden (2008) method 1: G = ZZ′ / (2 Σ p(1 − p)), with Z the A1 dosage
//! centred by 2p, p taken over all genotyped individuals, and missing calls
//! mean-imputed (0 after centring).
//!
//! Two ways to the cross product ZZ′, the same to rounding:
//! - **In integers**, where the CPU has an int8 path ([`Int8Path`]), for
//!   every marker without missing calls: Z = X − 1·(2p)ᵀ with X the raw
//!   dosages 0/1/2, so ZZ′ᵢₖ = (XXᵀ)ᵢₖ − aᵢ − aₖ + s, where aᵢ = Σⱼ 2pⱼ xᵢⱼ
//!   and s = Σⱼ 4pⱼ². XXᵀ is summed exactly in int32 (kernels' Gram
//!   kernel); the corrections are summed in f64.
//! - **In f32**, for markers with missing calls (and for every marker on a
//!   CPU without an int8 path): Z is decoded block by block of markers and
//!   multiplied with faer's f32 GEMM (lower triangle only); the blocks are
//!   summed in f64.

use std::io::Write;
use std::path::Path;

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};
use geno::{GenoError, PackedGenotypes};
use kernels::{gram_lower_u8, Int8Path};
use rayon::prelude::*;

/// Markers per block of the GRM product.
const BLOCK: usize = 2048;

/// A symmetric n × n matrix of individuals, stored in full (row-major).
///
/// Stored in f32, as GCTA's `.grm.bin` is: half the memory of f64 (the
/// 10,000-individual GRM takes 400 MB), and a relative rounding of 2⁻²⁴,
/// below what REML's h2 or the BLUPs show (they are computed in f64 from
/// these values; the tests hold h2 on real data to 1e-6 of the f64-stored
/// GRM's). Sums that make it run in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Kinship {
    pub n: usize,
    pub data: Vec<f32>,
}

impl Kinship {
    /// The kinship of row-major f64 values, each rounded to the nearest f32.
    pub fn from_f64(n: usize, values: &[f64]) -> Kinship {
        assert_eq!(values.len(), n * n, "Kinship::from_f64: not n × n values");
        Kinship {
            n,
            data: values.iter().map(|&v| v as f32).collect(),
        }
    }

    /// The values, widened to f64.
    pub fn to_f64(&self) -> Vec<f64> {
        self.data.iter().map(|&v| v as f64).collect()
    }

    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.n + j] as f64
    }

    /// The mean of the diagonal.
    pub fn mean_diagonal(&self) -> f64 {
        (0..self.n).map(|i| self.get(i, i)).sum::<f64>() / self.n as f64
    }
}

/// The VanRaden GRM with what went into it.
#[derive(Clone, Debug)]
pub struct Grm {
    pub kinship: Kinship,
    /// A1 frequency per marker over all genotyped individuals (0 when no call).
    pub freqs: Vec<f64>,
    /// 2 Σ p(1 − p).
    pub denom: f64,
    /// Markers with any variation (the others add nothing).
    pub n_polymorphic: usize,
}

/// The rayon-backed parallelism faer should use.
pub fn par() -> Par {
    let t = rayon::current_num_threads();
    if t > 1 {
        Par::rayon(t)
    } else {
        Par::Seq
    }
}

/// A1 frequencies over all individuals.
pub fn allele_freqs(g: &PackedGenotypes) -> Vec<f64> {
    (0..g.n_markers())
        .map(|j| g.counts(j).a1_freq().unwrap_or(0.0))
        .collect()
}

/// Centring tables: code → dosage − 2p, missing → 0.
pub fn centred_luts(freqs: &[f64]) -> Vec<[f32; 4]> {
    freqs
        .iter()
        .map(|&p| {
            let c = 2.0 * p;
            [(2.0 - c) as f32, 0.0, (1.0 - c) as f32, (-c) as f32]
        })
        .collect()
}

/// Accumulates Σ over marker blocks of Zb Zbᵀ (lower triangle) into `acc`
/// (n × n, row-major f64), for the markers `markers`, Z decoded through
/// `luts` (indexed by marker).
pub(crate) fn cross_product(
    g: &PackedGenotypes,
    markers: &[usize],
    luts: &[[f32; 4]],
    acc: &mut [f64],
) {
    let n = g.n_individuals();
    let m = markers.len();
    if m == 0 {
        return;
    }
    let mut buf = vec![0f32; n * BLOCK.min(m)];
    let mut block = Mat::<f32>::zeros(n, n);
    let mut j = 0;
    while j < m {
        let b = BLOCK.min(m - j);
        // SNP-major decode: b rows of n values = an n × b column-major matrix.
        for (t, &marker) in markers[j..j + b].iter().enumerate() {
            g.decode_snp_major(marker..marker + 1, luts, &mut buf[t * n..(t + 1) * n]);
        }
        let z = MatRef::from_column_major_slice(&buf[..b * n], n, b);
        matmul(
            block.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            z,
            BlockStructure::Rectangular,
            z.transpose(),
            BlockStructure::Rectangular,
            1.0f32,
            par(),
        );
        for c in 0..n {
            for r in c..n {
                acc[r * n + c] += block[(r, c)] as f64;
            }
        }
        j += b;
    }
}

/// Markers per block of the integer product (X is n × this, in bytes).
const INT_BLOCK: usize = 4096;

/// The dosages of the 4 calls in a packed byte, by PLINK code: 00 → 2 A1
/// alleles, 10 → 1, 11 → 0 (01, missing, does not occur among the markers
/// this is used for).
const QUAD_DOSAGES: [[u8; 4]; 256] = {
    const DOSAGE: [u8; 4] = [2, 0, 1, 0];
    let mut t = [[0u8; 4]; 256];
    let mut b = 0;
    while b < 256 {
        let mut u = 0;
        while u < 4 {
            t[b][u] = DOSAGE[(b >> (2 * u)) & 3];
            u += 1;
        }
        b += 1;
    }
    t
};

/// ZZ′ (lower triangle) over `markers`, which have no missing call, in
/// integers: XXᵀ − a1ᵀ − 1aᵀ + s (see the module documentation), handed
/// entry by entry (in f64) to `put`, which adds it to or stores it in `out`.
fn integer_cross_product<T: Send>(
    g: &PackedGenotypes,
    markers: &[usize],
    freqs: &[f64],
    path: Int8Path,
    out: &mut [T],
    put: impl Fn(&mut T, f64) + Sync,
) {
    let n = g.n_individuals();
    if markers.is_empty() || n == 0 {
        return;
    }
    let kb = INT_BLOCK.min(markers.len());
    let mut x = vec![0u8; n * kb];
    let mut xx = zeros_written::<i32>(n * n);
    let mut a = vec![0f64; n];
    let mut w = vec![0f64; kb];
    // Rows of X per decoding task: 256 individuals are 64 packed bytes of a
    // marker, and the task's packed bytes of a block (64 × 4096) stay in L2.
    const ROWS: usize = 256;
    for block in markers.chunks(kb) {
        let k = block.len();
        for (w, &j) in w.iter_mut().zip(block) {
            *w = 2.0 * freqs[j];
        }
        let w = &w[..k];
        x[..n * k]
            .par_chunks_mut(ROWS * k)
            .zip(a.par_chunks_mut(ROWS))
            .enumerate()
            .for_each(|(t, (rows, a))| {
                let len = a.len();
                let b0 = t * ROWS / 4;
                // One packed byte (4 individuals) of each marker at a time:
                // the writes run along 4 rows of X.
                for q in 0..len.div_ceil(4) {
                    let quads = (len - 4 * q).min(4);
                    for (c, &j) in block.iter().enumerate() {
                        let d = QUAD_DOSAGES[g.snp(j)[b0 + q] as usize];
                        for (u, &v) in d[..quads].iter().enumerate() {
                            rows[(4 * q + u) * k + c] = v;
                        }
                    }
                }
                for (r, a) in a.iter_mut().enumerate() {
                    let row = &rows[r * k..(r + 1) * k];
                    *a += row.iter().zip(w).map(|(&d, &w)| w * d as f64).sum::<f64>();
                }
            });
        gram_lower_u8(path, n, k, &x[..n * k], k, &mut xx, n, true);
    }
    let s: f64 = markers.iter().map(|&j| 4.0 * freqs[j] * freqs[j]).sum();
    out.par_chunks_mut(n).enumerate().for_each(|(i, row)| {
        for (k, v) in row[..=i].iter_mut().enumerate() {
            put(v, xx[i * n + k] as f64 - a[i] - a[k] + s);
        }
    });
}

/// `len` zeros, written in parallel rather than taken from the system's
/// zeroed pages: the products add into these sums, and an add reads a page
/// before it writes it. A fresh page read first is mapped to the shared zero
/// page, and the write that follows copies it and flushes the other cores'
/// TLBs (an interrupt to each, costly under a hypervisor): at n = 10,000
/// that took 10–15% of the GRM's time.
fn zeros_written<T: Copy + Default + Send>(len: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(len);
    v.spare_capacity_mut()
        .par_chunks_mut(1 << 16)
        .for_each(|c| {
            c.iter_mut().for_each(|x| {
                x.write(T::default());
            })
        });
    // SAFETY: every element of the capacity's first `len` was written above.
    unsafe { v.set_len(len) };
    v
}

fn symmetrize(acc: &mut [f64], n: usize, scale: f64) {
    for r in 0..n {
        acc[r * n..=r * n + r].iter_mut().for_each(|v| *v *= scale);
    }
    mirror_lower(acc, n);
}

/// Copies the lower triangle of the n × n row-major `d` onto its upper one.
fn mirror_lower<T: Copy>(d: &mut [T], n: usize) {
    for r in 0..n {
        for c in 0..r {
            d[c * n + r] = d[r * n + c];
        }
    }
}

/// VanRaden's GRM (method 1) of all individuals.
pub fn vanraden(g: &PackedGenotypes) -> Grm {
    let freqs = allele_freqs(g);
    let denom: f64 = freqs.iter().map(|&p| 2.0 * p * (1.0 - p)).sum();
    let n_polymorphic = freqs.iter().filter(|&&p| p > 0.0 && p < 1.0).count();
    let n = g.n_individuals();
    let scale = if denom > 0.0 { 1.0 / denom } else { 0.0 };
    // The f32 result is allocated before the f64 sums it is rounded from,
    // so that the sums, the last large allocation, go back to the system
    // when dropped rather than leave a hole below it (glibc serves these
    // from the heap).
    let mut kinship = Kinship {
        n,
        data: vec![0f32; n * n],
    };
    let luts = centred_luts(&freqs);
    let all: Vec<usize> = (0..g.n_markers()).collect();
    let int8 = Int8Path::current();
    let (complete, partial): (Vec<usize>, Vec<usize>) = match int8 {
        Some(_) => all.iter().partition(|&&j| g.counts(j).missing == 0),
        None => (Vec::new(), all),
    };
    match int8 {
        // No missing call: the integer product is exact, and each entry is
        // scaled and rounded straight into the f32 result (the same value
        // as through the f64 sums, with no n × n f64 buffer).
        Some(path) if partial.is_empty() => {
            integer_cross_product(g, &complete, &freqs, path, &mut kinship.data, |v, x| {
                *v = (x * scale) as f32
            });
            mirror_lower(&mut kinship.data, n);
        }
        _ => {
            let mut acc = zeros_written::<f64>(n * n);
            if let Some(path) = int8 {
                integer_cross_product(g, &complete, &freqs, path, &mut acc, |v, x| *v += x);
            }
            cross_product(g, &partial, &luts, &mut acc);
            symmetrize(&mut acc, n, scale);
            kinship
                .data
                .iter_mut()
                .zip(&acc)
                .for_each(|(k, &v)| *k = v as f32);
        }
    }
    Grm {
        kinship,
        freqs,
        denom,
        n_polymorphic,
    }
}

/// For each pair, the number of markers called in both individuals
/// (lower triangle of the GCTA `.grm.N.bin`).
pub fn pair_counts(g: &PackedGenotypes) -> Kinship {
    let (n, m) = (g.n_individuals(), g.n_markers());
    let miss = g.missing_per_individual(0..m);
    let mut both = vec![0f64; n * n];
    if miss.iter().any(|&k| k > 0) {
        let luts = vec![[0f32, 1.0, 0.0, 0.0]; m];
        let all: Vec<usize> = (0..m).collect();
        cross_product(g, &all, &luts, &mut both);
        symmetrize(&mut both, n, 1.0);
    }
    let data = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            (m as f64 - miss[i] as f64 - miss[j] as f64 + both[k]) as f32
        })
        .collect();
    Kinship { n, data }
}

/// `PREFIX` with a GCTA extension appended (`.grm.bin`, …).
fn gcta_path(prefix: &Path, ext: &str) -> std::path::PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(ext);
    std::path::PathBuf::from(s)
}

/// `PREFIX.grm.id`: FID and IID of each individual.
fn write_gcta_ids(prefix: &Path, g: &PackedGenotypes) -> Result<(), GenoError> {
    let mut ids = Vec::new();
    for ind in g.individuals() {
        writeln!(ids, "{}\t{}", ind.fid, ind.iid).expect("write to Vec");
    }
    geno::write_atomic(gcta_path(prefix, ".grm.id"), &ids)
}

/// Writes GCTA's binary GRM: `PREFIX.grm.bin` (lower triangle with the
/// diagonal, row by row, float32), `PREFIX.grm.N.bin` (markers per pair) and
/// `PREFIX.grm.id` (FID and IID).
pub fn write_gcta(prefix: &Path, g: &PackedGenotypes, grm: &Kinship) -> Result<(), GenoError> {
    let with = |ext: &str| gcta_path(prefix, ext);
    let n = grm.n;
    let lower = |k: &Kinship| {
        let mut out = Vec::with_capacity(n * (n + 1) / 2 * 4);
        for i in 0..n {
            for j in 0..=i {
                out.extend_from_slice(&(k.get(i, j) as f32).to_le_bytes());
            }
        }
        out
    };
    geno::write_atomic(with(".grm.bin"), &lower(grm))?;
    geno::write_atomic(with(".grm.N.bin"), &lower(&pair_counts(g)))?;
    write_gcta_ids(prefix, g)
}

/// Squared Euclidean distances between genotype vectors, from the
/// unscaled cross-product A = ZZ′: d²ᵢⱼ = Aᵢᵢ + Aⱼⱼ − 2Aᵢⱼ.
pub fn squared_distances(grm: &Grm) -> Kinship {
    let n = grm.kinship.n;
    let a = |i: usize, j: usize| grm.kinship.get(i, j) * grm.denom;
    let data = (0..n * n)
        .map(|k| {
            let (i, j) = (k / n, k % n);
            (a(i, i) + a(j, j) - 2.0 * a(i, j)).max(0.0) as f32
        })
        .collect();
    Kinship { n, data }
}

/// The median of the off-diagonal squared distances.
pub fn median_offdiagonal(d2: &Kinship) -> f64 {
    let n = d2.n;
    let mut v: Vec<f64> = (0..n)
        .flat_map(|i| (0..i).map(move |j| (i, j)))
        .map(|(i, j)| d2.get(i, j))
        .collect();
    if v.is_empty() {
        return 1.0;
    }
    let mid = v.len() / 2;
    v.select_nth_unstable_by(mid, f64::total_cmp);
    v[mid]
}

/// The Gaussian kernel exp(−d² / (θ · median d²)).
pub fn gaussian_kernel(d2: &Kinship, median: f64, theta: f64) -> Kinship {
    let s = 1.0 / (theta * median.max(1e-12));
    Kinship {
        n: d2.n,
        data: d2
            .data
            .iter()
            .map(|&d| (-(d as f64) * s).exp() as f32)
            .collect(),
    }
}

/// Bytes the in-memory GRM of `n` individuals needs beyond the genotypes:
/// the f64 matrix and the product block (f32 or int32) it is summed from.
pub fn in_memory_bytes(n: usize) -> u64 {
    12 * (n as u64) * (n as u64)
}

/// Writes GCTA's binary GRM ([`write_gcta`]'s files) without ever holding
/// the n × n matrix: rows are computed a panel at a time (`panel_bytes`
/// bounds a panel's buffers) and appended to the files as they are done.
/// Each panel multiplies the centred dosages of its rows with those of
/// every earlier row, block by block of markers, in f32 (faer's GEMM),
/// summed in f64; the pair counts of `.grm.N.bin` come the same way from the
/// missing calls, when there are any. `progress` is called with the rows
/// done. The figures equal [`vanraden`] and [`pair_counts`] to f32 rounding.
pub fn write_gcta_streamed(
    prefix: &Path,
    g: &PackedGenotypes,
    panel_bytes: u64,
    progress: &mut dyn FnMut(usize),
) -> Result<GrmSummary, GenoError> {
    let with = |ext: &str| gcta_path(prefix, ext);
    let (n, m) = (g.n_individuals(), g.n_markers());
    let freqs = allele_freqs(g);
    let denom: f64 = freqs.iter().map(|&p| 2.0 * p * (1.0 - p)).sum();
    let scale = if denom > 0.0 { 1.0 / denom } else { 0.0 };
    let luts = centred_luts(&freqs);
    let miss = g.missing_per_individual(0..m);
    let any_missing = miss.iter().any(|&k| k > 0);
    let missing_luts = vec![[0f32, 1.0, 0.0, 0.0]; m];
    // A panel of r rows holds r × n of f64 (the sum) and f32 (a block's
    // product); the decoded block is n × BLOCK f32.
    let rows_per_panel = ((panel_bytes / (12 * n.max(1) as u64)) as usize).clamp(64, n.max(64));
    let mut grm_file = geno::AtomicFile::create(with(".grm.bin"))?;
    let mut n_file = geno::AtomicFile::create(with(".grm.N.bin"))?;
    // The decoded block (n × b f32) stays near 64 MiB however many rows.
    let b = BLOCK
        .min((16 << 20) / n.max(1))
        .clamp(64, BLOCK)
        .min(m.max(1));
    let mut z = vec![0f32; n * b];
    let mut acc: Vec<f64> = Vec::new();
    let mut both: Vec<f64> = Vec::new();
    let mut prod = Mat::<f32>::zeros(0, 0);
    let mut diag_sum = 0.0;
    let mut row_bytes = Vec::new();
    let mut r0 = 0;
    while r0 < n {
        let r1 = (r0 + rows_per_panel).min(n);
        let rows = r1 - r0;
        // Sums of the panel's rows against rows 0..r1 (row-major, rows × r1).
        let mut panel = |luts: &[[f32; 4]], out: &mut Vec<f64>| {
            out.clear();
            out.resize(rows * r1, 0.0);
            prod.resize_with(rows, r1, |_, _| 0.0);
            let mut j = 0;
            while j < m {
                let k = b.min(m - j);
                z[..k * n]
                    .par_chunks_mut(n)
                    .enumerate()
                    .for_each(|(t, col)| g.decode_snp_major(j + t..j + t + 1, luts, col));
                let zm = MatRef::from_column_major_slice(&z[..k * n], n, k);
                faer::linalg::matmul::matmul(
                    prod.as_mut(),
                    Accum::Replace,
                    zm.subrows(r0, rows),
                    zm.subrows(0, r1).transpose(),
                    1.0f32,
                    par(),
                );
                out.par_chunks_mut(r1).enumerate().for_each(|(r, row)| {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v += prod[(r, c)] as f64;
                    }
                });
                j += k;
            }
        };
        panel(&luts, &mut acc);
        if any_missing {
            panel(&missing_luts, &mut both);
        }
        for (target, is_grm) in [(&mut grm_file, true), (&mut n_file, false)] {
            // Row by row: the panel's bytes are never held at once.
            for r in 0..rows {
                let i = r0 + r;
                row_bytes.clear();
                for c in 0..=i {
                    let v = if is_grm {
                        acc[r * r1 + c] * scale
                    } else {
                        let both = if any_missing { both[r * r1 + c] } else { 0.0 };
                        if c == i {
                            (m - miss[i] as usize) as f64
                        } else {
                            m as f64 - miss[i] as f64 - miss[c] as f64 + both
                        }
                    };
                    if is_grm && c == i {
                        diag_sum += v;
                    }
                    row_bytes.extend_from_slice(&(v as f32).to_le_bytes());
                }
                target.write_all(&row_bytes)?;
            }
        }
        progress(r1);
        r0 = r1;
    }
    grm_file.commit()?;
    n_file.commit()?;
    write_gcta_ids(prefix, g)?;
    Ok(GrmSummary {
        n_polymorphic: freqs.iter().filter(|&&p| p > 0.0 && p < 1.0).count(),
        mean_diagonal: if n > 0 { diag_sum / n as f64 } else { 0.0 },
        panels: n.div_ceil(rows_per_panel.max(1)),
    })
}

/// What [`write_gcta_streamed`] reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrmSummary {
    pub n_polymorphic: usize,
    pub mean_diagonal: f64,
    /// Row panels computed.
    pub panels: usize,
}
