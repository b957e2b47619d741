//! The compact genotype store: n individuals × m markers at 2 bits per call,
//! SNP-major with the byte layout of a PLINK 1 `.bed` file, plus the
//! metadata of individuals and markers. Genotypes are decoded to `f32` block
//! by block or batch by batch; a dense copy of the whole matrix is never made.

use std::ops::Range;

use ndarray::Array2;

/// 2-bit code of a call homozygous for A1 (dosage 2).
pub const HOM_A1: u8 = 0b00;
/// 2-bit code of a missing call.
pub const MISSING: u8 = 0b01;
/// 2-bit code of a heterozygous call (dosage 1).
pub const HET: u8 = 0b10;
/// 2-bit code of a call homozygous for A2 (dosage 0).
pub const HOM_A2: u8 = 0b11;

/// The A1 dosage of each 2-bit code; `None` is missing.
pub const CODE_DOSAGE: [Option<u8>; 4] = [Some(2), None, Some(1), Some(0)];

/// The 2-bit code of an A1 dosage (0, 1, 2) or of a missing call.
#[inline]
pub fn code_of(dosage: Option<u8>) -> u8 {
    match dosage {
        Some(2) => HOM_A1,
        Some(1) => HET,
        Some(0) => HOM_A2,
        _ => MISSING,
    }
}

/// One individual, as in a PLINK `.fam` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Individual {
    pub fid: String,
    pub iid: String,
    pub father: String,
    pub mother: String,
    pub sex: String,
    /// The `.fam` phenotype column, kept as text (`-9` when unknown).
    pub phenotype: String,
}

impl Individual {
    /// An individual known only by its ID.
    pub fn from_id(id: impl Into<String>) -> Self {
        let id = id.into();
        Individual {
            fid: id.clone(),
            iid: id,
            father: "0".into(),
            mother: "0".into(),
            sex: "0".into(),
            phenotype: "-9".into(),
        }
    }
}

/// One marker, as in a PLINK `.bim` line. The dosage counts copies of `a1`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    pub id: String,
    pub chromosome: String,
    /// Genetic position, kept as written.
    pub cm: String,
    /// Base-pair position (PLINK marks excluded markers with negative values).
    pub position: i64,
    pub a1: String,
    pub a2: String,
}

impl Marker {
    /// A marker known only by its ID: chromosome 0, position 0, alleles A and B.
    pub fn from_id(id: impl Into<String>) -> Self {
        Marker {
            id: id.into(),
            chromosome: "0".into(),
            cm: "0".into(),
            position: 0,
            a1: "A".into(),
            a2: "B".into(),
        }
    }
}

/// Counts of the four genotype classes of one marker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GenoCounts {
    pub hom_a1: u32,
    pub het: u32,
    pub hom_a2: u32,
    pub missing: u32,
}

impl GenoCounts {
    /// Individuals with a call.
    pub fn called(&self) -> u32 {
        self.hom_a1 + self.het + self.hom_a2
    }

    /// Frequency of A1 among called alleles; `None` when nothing is called.
    pub fn a1_freq(&self) -> Option<f64> {
        let c = self.called();
        (c > 0).then(|| (2.0 * self.hom_a1 as f64 + self.het as f64) / (2.0 * c as f64))
    }

    /// Mean A1 dosage among called individuals.
    pub fn mean_dosage(&self) -> Option<f64> {
        self.a1_freq().map(|p| 2.0 * p)
    }

    /// Fraction of individuals without a call.
    pub fn missing_rate(&self) -> f64 {
        let total = self.called() + self.missing;
        if total == 0 {
            0.0
        } else {
            self.missing as f64 / total as f64
        }
    }

    fn add(&mut self, code: u8) {
        match code {
            HOM_A1 => self.hom_a1 += 1,
            HET => self.het += 1,
            HOM_A2 => self.hom_a2 += 1,
            _ => self.missing += 1,
        }
    }
}

/// For each byte, the counts of its four codes packed as four u8 lanes
/// (hom_a1, missing, het, hom_a2).
const BYTE_COUNTS: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut b = 0;
    while b < 256 {
        let mut k = 0;
        let mut v = 0u32;
        while k < 4 {
            let code = (b >> (2 * k)) & 3;
            v += 1 << (8 * code);
            k += 1;
        }
        t[b] = v;
        b += 1;
    }
    t
};

/// n × m genotype calls packed at 2 bits, SNP-major, with metadata.
#[derive(Clone, Debug)]
pub struct PackedGenotypes {
    individuals: Vec<Individual>,
    markers: Vec<Marker>,
    /// Bytes per marker: ceil(n / 4).
    stride: usize,
    /// m × stride bytes, each marker's calls in `.bed` order; unused high bits are 0.
    data: Vec<u8>,
}

impl PackedGenotypes {
    /// Wraps packed bytes (m × ceil(n/4), `.bed` layout without the magic).
    ///
    /// # Panics
    /// If the byte count does not fit the metadata; readers check this first.
    pub fn from_packed(individuals: Vec<Individual>, markers: Vec<Marker>, data: Vec<u8>) -> Self {
        let stride = individuals.len().div_ceil(4);
        assert_eq!(data.len(), stride * markers.len(), "packed size mismatch");
        let mut g = PackedGenotypes {
            individuals,
            markers,
            stride,
            data,
        };
        g.clear_padding();
        g
    }

    /// The individuals, the markers and the packed bytes, taken apart.
    pub fn into_parts(self) -> (Vec<Individual>, Vec<Marker>, Vec<u8>) {
        (self.individuals, self.markers, self.data)
    }

    /// Builds a store from a dosage function, marker by marker.
    pub fn from_fn(
        individuals: Vec<Individual>,
        markers: Vec<Marker>,
        mut dosage: impl FnMut(usize, usize) -> Option<u8>,
    ) -> Self {
        let n = individuals.len();
        let stride = n.div_ceil(4);
        let mut data = vec![0u8; stride * markers.len()];
        for (j, row) in data
            .chunks_mut(stride.max(1))
            .enumerate()
            .take(markers.len())
        {
            for i in 0..n {
                row[i / 4] |= code_of(dosage(i, j)) << (2 * (i % 4));
            }
        }
        Self::from_packed(individuals, markers, data)
    }

    fn clear_padding(&mut self) {
        let n = self.individuals.len();
        if !n.is_multiple_of(4) && self.stride > 0 {
            let mask = (1u8 << (2 * (n % 4))) - 1;
            for row in self.data.chunks_mut(self.stride) {
                row[self.stride - 1] &= mask;
            }
        }
    }

    pub fn n_individuals(&self) -> usize {
        self.individuals.len()
    }

    pub fn n_markers(&self) -> usize {
        self.markers.len()
    }

    pub fn individuals(&self) -> &[Individual] {
        &self.individuals
    }

    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    /// Bytes per marker.
    pub fn stride(&self) -> usize {
        self.stride
    }

    /// All packed bytes, marker after marker.
    pub fn packed(&self) -> &[u8] {
        &self.data
    }

    /// The packed calls of marker `j`.
    #[inline]
    /// Whether every call is dosage 0 or 1 (and some are 1): how inbred
    /// lines coded 0/1 (BGLR's `wheat.X`) read.
    pub fn calls_are_zero_one(&self) -> bool {
        let n = self.individuals.len();
        let mut any_one = false;
        for j in 0..self.markers.len() {
            for i in 0..n {
                match self.code(i, j) {
                    0b00 => return false,
                    0b10 => any_one = true,
                    _ => {}
                }
            }
        }
        any_one
    }

    /// Reads calls coded 0/1 as the two homozygotes (inbred lines): dosage
    /// 1 becomes dosage 2. A call of dosage 2 already is an error, returned
    /// as (marker, individual).
    pub fn recode_inbred(&mut self) -> std::result::Result<(), (usize, usize)> {
        let n = self.individuals.len();
        for j in 0..self.markers.len() {
            for i in 0..n {
                if self.code(i, j) == 0b00 {
                    return Err((j, i));
                }
            }
        }
        for j in 0..self.markers.len() {
            let row = &mut self.data[j * self.stride..(j + 1) * self.stride];
            for i in 0..n {
                let shift = 2 * (i % 4);
                if (row[i / 4] >> shift) & 0b11 == 0b10 {
                    row[i / 4] &= !(0b11 << shift);
                }
            }
        }
        Ok(())
    }

    pub fn snp(&self, j: usize) -> &[u8] {
        &self.data[j * self.stride..(j + 1) * self.stride]
    }

    /// The 2-bit code of individual `i` at marker `j`.
    #[inline]
    pub fn code(&self, i: usize, j: usize) -> u8 {
        (self.data[j * self.stride + i / 4] >> (2 * (i % 4))) & 3
    }

    /// The A1 dosage of individual `i` at marker `j`; `None` if missing.
    #[inline]
    pub fn dosage(&self, i: usize, j: usize) -> Option<u8> {
        CODE_DOSAGE[self.code(i, j) as usize]
    }

    /// Counts of the genotype classes of marker `j` over all individuals.
    pub fn counts(&self, j: usize) -> GenoCounts {
        let row = self.snp(j);
        let n = self.individuals.len();
        let full = n / 4;
        let mut c = GenoCounts::default();
        // Sum byte tables in u32 lanes of u8, flushing before a lane can overflow.
        for chunk in row[..full].chunks(63) {
            let mut acc = 0u32;
            for &b in chunk {
                acc += BYTE_COUNTS[b as usize];
            }
            c.hom_a1 += acc & 0xff;
            c.missing += (acc >> 8) & 0xff;
            c.het += (acc >> 16) & 0xff;
            c.hom_a2 += acc >> 24;
        }
        for i in full * 4..n {
            c.add(self.code(i, j));
        }
        c
    }

    /// Counts of marker `j` over a subset of individuals.
    pub fn counts_among(&self, j: usize, individuals: &[usize]) -> GenoCounts {
        let mut c = GenoCounts::default();
        for &i in individuals {
            c.add(self.code(i, j));
        }
        c
    }

    /// For each individual, the number of missing calls over the given markers.
    pub fn missing_per_individual(&self, markers: impl Iterator<Item = usize>) -> Vec<u32> {
        let n = self.individuals.len();
        let words = self.stride.div_ceil(8);
        let mut miss = vec![0u32; n];
        // A code is missing (01) when its low bit is set and its high bit
        // is not. A word of a row holds 32 calls; its missing bits, split
        // into even and odd individuals, are summed into 4-bit counters
        // (16 per u64), which are added to the totals every 15 markers,
        // before a counter can overflow.
        const NIBBLES: u64 = 0x1111_1111_1111_1111;
        let mut acc = vec![0u64; 2 * words];
        let flush = |acc: &mut [u64], miss: &mut [u32]| {
            for (w, pair) in acc.chunks_exact_mut(2).enumerate() {
                for (parity, counters) in pair.iter_mut().enumerate() {
                    let mut c = std::mem::take(counters);
                    let mut i = 32 * w + parity;
                    while c != 0 && i < n {
                        miss[i] += (c & 0xf) as u32;
                        c >>= 4;
                        i += 2;
                    }
                }
            }
        };
        let mut pending = 0;
        for j in markers {
            let row = self.snp(j);
            let mut chunks = row.chunks_exact(8);
            let mut add = |w: usize, b: u64| {
                let m = b & !(b >> 1) & 0x5555_5555_5555_5555;
                acc[2 * w] += m & NIBBLES;
                acc[2 * w + 1] += (m >> 2) & NIBBLES;
            };
            for (w, word) in (&mut chunks).enumerate() {
                add(w, u64::from_le_bytes(word.try_into().expect("8 bytes")));
            }
            let tail = chunks.remainder();
            if !tail.is_empty() {
                let mut last = [0u8; 8];
                last[..tail.len()].copy_from_slice(tail);
                add(words - 1, u64::from_le_bytes(last));
            }
            pending += 1;
            if pending == 15 {
                flush(&mut acc, &mut miss);
                pending = 0;
            }
        }
        if pending > 0 {
            flush(&mut acc, &mut miss);
        }
        miss
    }

    /// Decodes markers `cols` for all individuals into `out`
    /// (`cols.len()` rows of n values, SNP-major), each code mapped through
    /// the marker's 4-entry table `lut[j]` indexed by code.
    pub fn decode_snp_major(&self, cols: Range<usize>, lut: &[[f32; 4]], out: &mut [f32]) {
        let n = self.individuals.len();
        assert_eq!(out.len(), cols.len() * n, "output size");
        for (k, j) in cols.enumerate() {
            decode_row(self.snp(j), &lut[j], &mut out[k * n..(k + 1) * n]);
        }
    }

    /// Decodes the calls of individuals `rows` at markers `cols` into `out`
    /// (`rows.len()` rows of `cols.len()` values, individual-major), each
    /// code mapped through `lut[j]`.
    pub fn decode_rows(
        &self,
        rows: &[usize],
        cols: Range<usize>,
        lut: &[[f32; 4]],
        out: &mut [f32],
    ) {
        assert_eq!(out.len(), rows.len() * cols.len(), "output size");
        let start = cols.start;
        crate::decode::decode(&self.store(), rows, |k| start + k, &lut[cols], out);
    }

    /// Decodes the calls of individuals `rows` at the markers listed in
    /// `cols` (in that order) into `out` (`rows.len()` rows of `cols.len()`
    /// values), marker k's code mapped through `lut[k]`.
    pub fn decode_rows_mapped(
        &self,
        rows: &[usize],
        cols: &[usize],
        lut: &[[f32; 4]],
        out: &mut [f32],
    ) {
        assert_eq!(out.len(), rows.len() * cols.len(), "output size");
        assert_eq!(lut.len(), cols.len(), "one table per column");
        crate::decode::decode(&self.store(), rows, |k| cols[k], lut, out);
    }

    fn store(&self) -> crate::decode::Store<'_> {
        crate::decode::Store {
            data: &self.data,
            stride: self.stride,
        }
    }

    /// Standardized calls of individuals `rows` at markers `cols`, as a
    /// `rows.len() × cols.len()` array; missing calls become 0 (the mean).
    pub fn standardized_block(
        &self,
        rows: &[usize],
        cols: Range<usize>,
        standardizer: &Standardizer,
    ) -> Array2<f32> {
        let mut out = Array2::zeros((rows.len(), cols.len()));
        self.decode_rows(
            rows,
            cols,
            &standardizer.lut,
            out.as_slice_mut().expect("standard layout"),
        );
        out
    }

    /// A new store holding the chosen individuals and markers, in the given order.
    pub fn subset(&self, rows: &[usize], cols: &[usize]) -> PackedGenotypes {
        let individuals = rows.iter().map(|&i| self.individuals[i].clone()).collect();
        let markers = cols.iter().map(|&j| self.markers[j].clone()).collect();
        let stride = rows.len().div_ceil(4);
        let mut data = vec![0u8; stride * cols.len()];
        for (k, &j) in cols.iter().enumerate() {
            pack_subset(self.snp(j), rows, &mut data[k * stride..(k + 1) * stride]);
        }
        Self::from_packed(individuals, markers, data)
    }
}

/// Packs the calls of `rows` from one marker's bytes into `out`.
pub(crate) fn pack_subset(src: &[u8], rows: &[usize], out: &mut [u8]) {
    out.fill(0);
    for (k, &i) in rows.iter().enumerate() {
        let code = (src[i / 4] >> (2 * (i % 4))) & 3;
        out[k / 4] |= code << (2 * (k % 4));
    }
}

/// Decodes one marker's packed bytes through a 4-entry table, two calls at a
/// time through a 16-entry nibble table.
#[inline]
fn decode_row(row: &[u8], lut: &[f32; 4], out: &mut [f32]) {
    let n = out.len();
    let mut pair = [[0f32; 2]; 16];
    for (nib, p) in pair.iter_mut().enumerate() {
        *p = [lut[nib & 3], lut[nib >> 2]];
    }
    let full = n / 4;
    let (head, tail) = out.split_at_mut(full * 4);
    for (quad, &b) in head.chunks_exact_mut(4).zip(row) {
        let lo = pair[(b & 15) as usize];
        let hi = pair[(b >> 4) as usize];
        quad[0] = lo[0];
        quad[1] = lo[1];
        quad[2] = hi[0];
        quad[3] = hi[1];
    }
    for (k, v) in tail.iter_mut().enumerate() {
        let code = (row[full] >> (2 * k)) & 3;
        *v = lut[code as usize];
    }
}

/// Per-marker centring and scaling learned from a set of individuals:
/// z = (dosage − mean) / sd, with missing calls at 0 (mean imputation) and
/// monomorphic markers at 0 everywhere.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Mean A1 dosage per marker.
    pub mean: Vec<f32>,
    /// Standard deviation of the dosage per marker (0 when monomorphic).
    pub sd: Vec<f32>,
    /// The decoding table of each marker, indexed by 2-bit code.
    pub lut: Vec<[f32; 4]>,
}

impl Standardizer {
    /// Learns the means and standard deviations from `individuals` only
    /// (all individuals when `None`).
    pub fn fit(g: &PackedGenotypes, individuals: Option<&[usize]>) -> Self {
        let m = g.n_markers();
        let mut mean = Vec::with_capacity(m);
        let mut sd = Vec::with_capacity(m);
        for j in 0..m {
            let c = match individuals {
                Some(rows) => g.counts_among(j, rows),
                None => g.counts(j),
            };
            let called = c.called() as f64;
            if called == 0.0 {
                mean.push(0.0);
                sd.push(0.0);
                continue;
            }
            let s1 = 2.0 * c.hom_a1 as f64 + c.het as f64;
            let s2 = 4.0 * c.hom_a1 as f64 + c.het as f64;
            let mu = s1 / called;
            let var = (s2 / called - mu * mu).max(0.0);
            mean.push(mu as f32);
            sd.push(var.sqrt() as f32);
        }
        Self::from_moments(mean, sd)
    }

    /// Builds the tables from given means and standard deviations.
    pub fn from_moments(mean: Vec<f32>, sd: Vec<f32>) -> Self {
        let lut = mean
            .iter()
            .zip(&sd)
            .map(|(&mu, &s)| {
                let inv = if s > 1e-12 { 1.0 / s } else { 0.0 };
                [(2.0 - mu) * inv, 0.0, (1.0 - mu) * inv, (0.0 - mu) * inv]
            })
            .collect();
        Standardizer { mean, sd, lut }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, m: usize) -> PackedGenotypes {
        let ind = (0..n)
            .map(|i| Individual::from_id(format!("i{i}")))
            .collect();
        let mk = (0..m).map(|j| Marker::from_id(format!("m{j}"))).collect();
        PackedGenotypes::from_fn(ind, mk, |i, j| match (i * 7 + j * 3) % 5 {
            0 => None,
            k => Some((k % 3) as u8),
        })
    }

    fn expected(i: usize, j: usize) -> Option<u8> {
        match (i * 7 + j * 3) % 5 {
            0 => None,
            k => Some((k % 3) as u8),
        }
    }

    #[test]
    fn missing_calls_per_individual_match_naive() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for n in [1, 3, 31, 32, 33, 63, 64, 65, 127, 129, 257] {
            let m = 79;
            // Each marker its own rate of missing calls, from none to all
            // (every call of the last 33: more than two counters' worth).
            let g = PackedGenotypes::from_fn(
                (0..n)
                    .map(|i| Individual::from_id(format!("i{i}")))
                    .collect(),
                (0..m).map(|j| Marker::from_id(format!("m{j}"))).collect(),
                |_, j| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    ((x % 46) >= j as u64).then_some((x % 3) as u8)
                },
            );
            for subset in [(0..m).collect::<Vec<_>>(), (0..m).step_by(3).collect()] {
                let naive: Vec<u32> = (0..n)
                    .map(|i| subset.iter().filter(|&&j| g.code(i, j) == 1).count() as u32)
                    .collect();
                assert_eq!(
                    g.missing_per_individual(subset.iter().copied()),
                    naive,
                    "n = {n}"
                );
            }
        }
    }

    #[test]
    fn codes_and_counts_match_naive() {
        for n in [1, 2, 3, 4, 5, 6, 7, 63, 64, 65, 255, 257] {
            let g = toy(n, 9);
            for j in 0..9 {
                let mut naive = GenoCounts::default();
                for i in 0..n {
                    assert_eq!(g.dosage(i, j), expected(i, j));
                    naive.add(code_of(expected(i, j)));
                }
                assert_eq!(g.counts(j), naive, "n={n} j={j}");
            }
            let miss = g.missing_per_individual(0..9);
            for (i, &k) in miss.iter().enumerate() {
                let naive = (0..9).filter(|&j| expected(i, j).is_none()).count() as u32;
                assert_eq!(k, naive);
            }
        }
    }

    #[test]
    fn decoders_agree_with_naive_standardization() {
        let g = toy(37, 11);
        let st = Standardizer::fit(&g, None);
        let mut snp_major = vec![0f32; 11 * 37];
        g.decode_snp_major(0..11, &st.lut, &mut snp_major);
        let rows: Vec<usize> = (0..37).rev().collect();
        let block = g.standardized_block(&rows, 2..9, &st);
        for j in 0..11 {
            let vals: Vec<f64> = (0..37)
                .filter_map(|i| expected(i, j))
                .map(f64::from)
                .collect();
            let mu = vals.iter().sum::<f64>() / vals.len() as f64;
            let sd =
                (vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
            for i in 0..37 {
                let want = expected(i, j).map_or(0.0, |d| (d as f64 - mu) / sd);
                assert!((snp_major[j * 37 + i] as f64 - want).abs() < 1e-5);
                if (2..9).contains(&j) {
                    assert!((block[[36 - i, j - 2]] as f64 - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn subset_keeps_calls() {
        let g = toy(23, 6);
        let rows = [22, 0, 5, 17, 3];
        let cols = [5, 1, 2];
        let s = g.subset(&rows, &cols);
        for (a, &i) in rows.iter().enumerate() {
            for (b, &j) in cols.iter().enumerate() {
                assert_eq!(s.dosage(a, b), g.dosage(i, j));
            }
        }
    }
}
