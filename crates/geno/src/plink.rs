//! PLINK 1 binary filesets (`.bed` + `.bim` + `.fam`): our own packed reader
//! and writer. The `.bed` is SNP-major after the magic bytes 6c 1b 01, 2 bits
//! per call with the first individual in the low bits: 00 homozygous A1,
//! 01 missing, 10 heterozygous, 11 homozygous A2.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{GenoError, Result};
use crate::packed::{pack_subset, Individual, Marker, PackedGenotypes};
use crate::select::{Chosen, Selection};
use crate::textio::{
    id_text, open_text, split_fields, to_string, AtomicFile, Delimiter, LineReader,
};

/// The magic bytes of a SNP-major PLINK 1 `.bed` file.
pub const BED_MAGIC: [u8; 3] = [0x6c, 0x1b, 0x01];

/// The three paths of a PLINK fileset.
#[derive(Clone, Debug)]
pub struct PlinkPaths {
    pub bed: PathBuf,
    pub bim: PathBuf,
    pub fam: PathBuf,
}

impl PlinkPaths {
    /// The fileset of `path`, which may be the prefix or any of the three files.
    pub fn new(path: &Path) -> Self {
        let prefix = match path.extension().and_then(|e| e.to_str()) {
            Some("bed" | "bim" | "fam") => path.with_extension(""),
            _ => path.to_path_buf(),
        };
        let with = |ext: &str| {
            let mut s = prefix.clone().into_os_string();
            s.push(".");
            s.push(ext);
            PathBuf::from(s)
        };
        PlinkPaths {
            bed: with("bed"),
            bim: with("bim"),
            fam: with("fam"),
        }
    }
}

/// One `.bim` line's fields as a marker, or the error naming the line.
fn bim_marker(path: &Path, line: usize, f: &[&[u8]]) -> Result<Marker> {
    if f.len() != 6 {
        return Err(GenoError::Ragged {
            path: path.into(),
            line,
            found: f.len(),
            expected: 6,
            why: "a .bim line holds chromosome, marker ID, cM, base-pair position, A1 and A2"
                .into(),
        });
    }
    let position = std::str::from_utf8(f[3])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| {
            GenoError::parse(
                path,
                line,
                4,
                format!(
                    "expected an integer base-pair position, found '{}'",
                    to_string(f[3])
                ),
            )
        })?;
    Ok(Marker {
        chromosome: to_string(f[0]),
        id: id_text(path, line, 2, f[1], "marker ID")?,
        cm: to_string(f[2]),
        position,
        a1: to_string(f[4]),
        a2: to_string(f[5]),
    })
}

/// [`bim_marker`] into an existing marker, reusing its strings' memory.
fn bim_marker_into(path: &Path, line: usize, f: &[&[u8]], mk: &mut Marker) -> Result<()> {
    if f.len() != 6 || std::str::from_utf8(f[1]).is_err() {
        *mk = bim_marker(path, line, f)?;
        return Ok(());
    }
    let Some(position) = std::str::from_utf8(f[3])
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
    else {
        // The error, worded as the whole reader words it.
        *mk = bim_marker(path, line, f)?;
        return Ok(());
    };
    mk.position = position;
    for (dst, src) in [
        (&mut mk.chromosome, f[0]),
        (&mut mk.id, f[1]),
        (&mut mk.cm, f[2]),
        (&mut mk.a1, f[4]),
        (&mut mk.a2, f[5]),
    ] {
        dst.clear();
        match std::str::from_utf8(src) {
            Ok(text) => dst.push_str(text),
            Err(_) => dst.push_str(&String::from_utf8_lossy(src)),
        }
    }
    Ok(())
}

/// A `.bim` line's fields split as [`split_fields`] splits them (any ASCII
/// white space, quotes stripped), into `out` without allocating; `None`
/// unless there are exactly six.
fn six_fields<'a>(line: &'a [u8], out: &mut [&'a [u8]; 6]) -> Option<()> {
    let mut k = 0;
    for field in line
        .split(u8::is_ascii_whitespace)
        .filter(|f| !f.is_empty())
    {
        if k == 6 {
            return None;
        }
        out[k] = crate::textio::unquote(field);
        k += 1;
    }
    (k == 6).then_some(())
}

/// Reads a `.bim` file: six whitespace-separated columns per line.
pub fn read_bim(path: &Path) -> Result<Vec<Marker>> {
    let mut lines = LineReader::new(open_text(path, "a PLINK .bim file")?, path);
    let mut markers = Vec::new();
    let mut line_of = Vec::new();
    while lines.next_line()? {
        let f = split_fields(&lines.buf, Delimiter::Whitespace);
        if f.is_empty() {
            continue;
        }
        markers.push(bim_marker(path, lines.line_no(), &f)?);
        line_of.push(lines.line_no());
    }
    if markers.is_empty() {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: "a PLINK .bim file with one line per marker",
        });
    }
    crate::error::unique_markers(
        path,
        "line",
        markers.iter().map(|m| m.id.as_str()).zip(line_of),
    )?;
    Ok(markers)
}

/// A PLINK fileset read a block of markers at a time, without holding the
/// whole `.bed` or `.bim` in memory: for passes over a fileset larger than
/// the memory a command should use (`qc`).
///
/// It checks less than [`read_plink`] as it goes: the `.bed`'s size is
/// checked against the `.bim`'s line count only at the end, and duplicate
/// marker IDs by a 64-bit hash of each. Any fault it finds is an error, but
/// not always the one [`read_plink`] gives, so a caller that wants that
/// message reads the fileset again with [`read_plink`] when this fails
/// (`Err` from [`PlinkBlocks::open`] or [`PlinkBlocks::next_block`]).
pub struct PlinkBlocks {
    paths: PlinkPaths,
    individuals: Vec<Individual>,
    stride: usize,
    /// Markers the `.bed`'s size holds.
    m_bed: usize,
    bed: std::io::BufReader<File>,
    bim: LineReader<std::io::BufReader<File>>,
    read: usize,
    /// Every marker ID's hash, checked for repeats after the last block
    /// (sorted: no random access into a table per marker).
    seen: Vec<u64>,
    /// Blocks handed back ([`PlinkBlocks::recycle`]): their markers' strings
    /// and their buffers are refilled rather than allocated again.
    spare: Vec<PackedGenotypes>,
}

/// A 64-bit hash of a marker ID: FNV-1a, then SplitMix64's finalizer so
/// that every bit depends on every byte.
fn id_hash(id: &str) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in id.as_bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

impl PlinkBlocks {
    /// Opens the fileset at `path` (prefix or `.bed`) and reads its `.fam`.
    pub fn open(path: &Path) -> Result<PlinkBlocks> {
        let paths = PlinkPaths::new(path);
        for p in [&paths.bed, &paths.bim, &paths.fam] {
            if !p.exists() {
                return Err(GenoError::invalid(p, "file not found"));
            }
        }
        let individuals: Vec<Individual> = read_fam(&paths.fam)?
            .into_iter()
            .map(|r| r.individual)
            .collect();
        let stride = individuals.len().div_ceil(4);
        let file = File::open(&paths.bed).map_err(|e| GenoError::io(&paths.bed, e))?;
        let size = file
            .metadata()
            .map_err(|e| GenoError::io(&paths.bed, e))?
            .len();
        let mut bed = std::io::BufReader::with_capacity(1 << 20, file);
        let mut magic = [0u8; 3];
        bed.read_exact(&mut magic)
            .map_err(|e| GenoError::io(&paths.bed, e))?;
        if magic != BED_MAGIC || size < 3 || (size - 3) % stride as u64 != 0 {
            return Err(GenoError::invalid(
                &paths.bed,
                "not a SNP-major .bed of the .fam's individuals",
            ));
        }
        let bim = open_text(&paths.bim, "a PLINK .bim file")?;
        let bim = LineReader::new(bim, &paths.bim);
        let m_bed = ((size - 3) / stride as u64) as usize;
        let seen = Vec::with_capacity(m_bed.min(1 << 26));
        Ok(PlinkBlocks {
            m_bed,
            paths,
            individuals,
            stride,
            bed,
            bim,
            read: 0,
            seen,
            spare: Vec::new(),
        })
    }

    pub fn individuals(&self) -> &[Individual] {
        &self.individuals
    }

    /// The fileset's paths.
    pub fn paths(&self) -> &PlinkPaths {
        &self.paths
    }

    /// The next block of up to `max` markers, all individuals; `None` after
    /// the last.
    pub fn next_block(&mut self, max: usize) -> Result<Option<PackedGenotypes>> {
        let (individuals, mut spare, mut data) = match self.spare.pop() {
            Some(g) => g.into_parts(),
            None => (self.individuals.clone(), Vec::new(), Vec::new()),
        };
        let mut markers = Vec::with_capacity(max.min(1 << 16));
        while markers.len() < max && self.bim.next_line()? {
            let line = self.bim.line_no();
            let mut six: [&[u8]; 6] = [&[]; 6];
            let mk = if six_fields(&self.bim.buf, &mut six).is_some() {
                match spare.pop() {
                    Some(mut mk) => {
                        bim_marker_into(&self.paths.bim, line, &six, &mut mk)?;
                        mk
                    }
                    None => bim_marker(&self.paths.bim, line, &six)?,
                }
            } else {
                let f = split_fields(&self.bim.buf, Delimiter::Whitespace);
                if f.is_empty() {
                    continue;
                }
                bim_marker(&self.paths.bim, line, &f)?
            };
            self.seen.push(id_hash(&mk.id));
            markers.push(mk);
        }
        if markers.is_empty() {
            if self.read != self.m_bed || self.read == 0 {
                return Err(GenoError::invalid(
                    &self.paths.bed,
                    "the .bed's size does not fit the .bim's markers",
                ));
            }
            self.seen.sort_unstable();
            if self.seen.windows(2).any(|w| w[0] == w[1]) {
                return Err(GenoError::invalid(
                    &self.paths.bim,
                    "a marker ID appears twice (or two hash alike)",
                ));
            }
            return Ok(None);
        }
        if self.read + markers.len() > self.m_bed {
            return Err(GenoError::invalid(
                &self.paths.bed,
                "the .bed's size does not fit the .bim's markers",
            ));
        }
        data.clear();
        data.resize(markers.len() * self.stride, 0);
        self.bed
            .read_exact(&mut data)
            .map_err(|e| GenoError::io(&self.paths.bed, e))?;
        let n = self.individuals.len();
        if !n.is_multiple_of(4) {
            let unused = !((1u8 << (2 * (n % 4))) - 1);
            if (0..markers.len()).any(|j| data[(j + 1) * self.stride - 1] & unused != 0) {
                return Err(GenoError::invalid(
                    &self.paths.bed,
                    "calls in the padding bits after the last individual",
                ));
            }
        }
        self.read += markers.len();
        Ok(Some(PackedGenotypes::from_packed(
            individuals,
            markers,
            data,
        )))
    }

    /// Hands a block back, so that a later one reuses its memory.
    pub fn recycle(&mut self, block: PackedGenotypes) {
        self.spare.push(block);
    }
}

/// One `.fam` line: the individual and the columns after the sixth' start
/// (the phenotype column and any extra ones, as text).
pub struct FamRow {
    pub individual: Individual,
    /// Column 6 onwards: the phenotype and any further phenotype columns.
    pub phenotypes: Vec<String>,
}

/// Reads a `.fam` file: at least six whitespace-separated columns, the same
/// number on every line, with unique individual IDs (column 2).
pub fn read_fam(path: &Path) -> Result<Vec<FamRow>> {
    let mut lines = LineReader::new(open_text(path, "a PLINK .fam file")?, path);
    let mut rows = Vec::new();
    let mut width = 0;
    let mut seen: HashMap<String, usize> = HashMap::new();
    while lines.next_line()? {
        let f = split_fields(&lines.buf, Delimiter::Whitespace);
        if f.is_empty() {
            continue;
        }
        if f.len() < 6 || (width != 0 && f.len() != width) {
            return Err(GenoError::Ragged {
                path: path.into(),
                line: lines.line_no(),
                found: f.len(),
                expected: if width == 0 { 6 } else { width },
                why: if width == 0 {
                    "a .fam line holds family ID, individual ID, father, mother, sex and phenotype"
                        .into()
                } else {
                    "every .fam line must have as many columns as the first".into()
                },
            });
        }
        width = f.len();
        let iid = id_text(path, lines.line_no(), 2, f[1], "individual ID")?;
        if let Some(&first) = seen.get(&iid) {
            return Err(GenoError::DuplicateId {
                path: path.into(),
                id: iid,
                first,
                second: lines.line_no(),
            });
        }
        seen.insert(iid.clone(), lines.line_no());
        rows.push(FamRow {
            individual: Individual {
                fid: id_text(path, lines.line_no(), 1, f[0], "family ID")?,
                iid,
                father: to_string(f[2]),
                mother: to_string(f[3]),
                sex: to_string(f[4]),
                phenotype: to_string(f[5]),
            },
            phenotypes: f[5..].iter().map(|s| to_string(s)).collect(),
        });
    }
    if rows.is_empty() {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: "a PLINK .fam file with one line per individual",
        });
    }
    Ok(rows)
}

/// Reads a whole PLINK fileset into the packed store, checking the magic
/// bytes and that the `.bed` size fits the `.bim` × `.fam` counts.
pub fn read_plink(path: &Path) -> Result<PackedGenotypes> {
    read_plink_selected(path, &Selection::default()).map(|(g, _)| g)
}

/// Reads the individuals and markers of `selection` from a PLINK fileset:
/// only the selected markers' bytes are read from the `.bed` (runs of
/// adjacent markers in one read), so a subset of a fileset larger than
/// memory costs the memory of the subset.
pub fn read_plink_selected(
    path: &Path,
    selection: &Selection,
) -> Result<(PackedGenotypes, Chosen)> {
    let paths = PlinkPaths::new(path);
    for p in [&paths.bed, &paths.bim, &paths.fam] {
        if !p.exists() {
            return Err(GenoError::invalid(
                p,
                "file not found; a PLINK 1 binary fileset needs .bed, .bim and .fam side by side",
            ));
        }
    }
    let markers = read_bim(&paths.bim)?;
    let individuals: Vec<Individual> = read_fam(&paths.fam)?
        .into_iter()
        .map(|r| r.individual)
        .collect();
    let (n, m) = (individuals.len(), markers.len());
    let stride = n.div_ceil(4);

    let mut file = File::open(&paths.bed).map_err(|e| GenoError::io(&paths.bed, e))?;
    let size = file
        .metadata()
        .map_err(|e| GenoError::io(&paths.bed, e))?
        .len();
    let mut magic = [0u8; 3];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| GenoError::io(&paths.bed, e))?;
    if got < 3 || magic != BED_MAGIC {
        let found = magic[..got]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        let found = if got == 0 {
            "missing (the file is empty)".to_string()
        } else if magic[..2] == BED_MAGIC[..2] && got == 3 && magic[2] == 0 {
            format!("{found} (an individual-major .bed; convert it with plink1.9 --make-bed)")
        } else {
            found
        };
        return Err(GenoError::BadMagic {
            path: paths.bed.clone(),
            found,
        });
    }
    let expected = 3 + (m as u64) * (stride as u64);
    if size != expected {
        let mut message = format!(
            "the file has {size} bytes, but {m} markers ({}) × {n} individuals ({}) need {expected} bytes (3 + {m} × {stride})",
            paths.bim.display(),
            paths.fam.display()
        );
        if size > 3 && (size - 3) % (m as u64) == 0 {
            let s = (size - 3) / m as u64;
            message.push_str(&format!(
                "; the size fits {m} markers with {}–{} individuals, so the .fam may not belong to this .bed",
                4 * s - 3,
                4 * s
            ));
        } else if size > 3 && (size - 3) % (stride as u64) == 0 {
            message.push_str(&format!(
                "; the size fits {} markers of {n} individuals, so the .bim may not belong to this .bed",
                (size - 3) / stride as u64
            ));
        }
        return Err(GenoError::BedSize {
            path: paths.bed.clone(),
            message,
        });
    }
    let chosen = selection.resolve(&individuals, &markers)?;
    let cols: Vec<usize> = match &chosen.cols {
        Some(c) => c.clone(),
        None => (0..m).collect(),
    };
    let rows = chosen.rows.as_deref();
    let out_stride = rows.map_or(stride, |r| r.len().div_ceil(4));
    let mut data = vec![0u8; cols.len() * out_stride];
    // Runs of adjacent markers, read at most RUN bytes at a time.
    const RUN: usize = 1 << 22;
    let per_run = (RUN / stride.max(1)).max(1);
    let mut buf = Vec::new();
    let mut k = 0;
    while k < cols.len() {
        let mut end = k + 1;
        while end < cols.len() && end - k < per_run && cols[end] == cols[end - 1] + 1 {
            end += 1;
        }
        let first = cols[k];
        let bytes = (end - k) * stride;
        let offset = 3 + (first as u64) * (stride as u64);
        let target: &mut [u8] = if rows.is_none() {
            &mut data[k * stride..end * stride]
        } else {
            buf.resize(bytes, 0);
            &mut buf[..]
        };
        read_at(&file, target, offset).map_err(|e| GenoError::io(&paths.bed, e))?;
        // PLINK writes zeros in the unused bits of each marker's last byte;
        // calls there mean the .fam lists fewer individuals than the .bed holds.
        if n % 4 != 0 {
            let unused = !((1u8 << (2 * (n % 4))) - 1);
            if let Some(t) = (0..end - k).find(|&t| target[(t + 1) * stride - 1] & unused != 0) {
                let j = cols[k + t];
                return Err(GenoError::BedSize {
                    path: paths.bed.clone(),
                    message: format!(
                        "marker {} ({}) holds calls after the last of the {n} individuals of {}, in the padding bits that PLINK leaves empty; the .fam may be missing lines",
                        j + 1,
                        markers[j].id,
                        paths.fam.display()
                    ),
                });
            }
        }
        if let Some(rows) = rows {
            for t in 0..end - k {
                crate::packed::pack_subset(
                    &buf[t * stride..(t + 1) * stride],
                    rows,
                    &mut data[(k + t) * out_stride..(k + t + 1) * out_stride],
                );
            }
        }
        k = end;
    }
    let (individuals, markers) = if chosen.rows.is_none() && chosen.cols.is_none() {
        (individuals, markers)
    } else {
        let individuals = match rows {
            Some(r) => r.iter().map(|&i| individuals[i].clone()).collect(),
            None => individuals,
        };
        let markers = cols.iter().map(|&j| markers[j].clone()).collect();
        (individuals, markers)
    };
    Ok((
        PackedGenotypes::from_packed(individuals, markers, data),
        chosen,
    ))
}

/// Fills `buf` from `offset` of `file` (positioned reads: no seek state).
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}

/// Writes a PLINK fileset for the chosen individuals and markers (all when
/// `None`), each file atomically. `path` may be the prefix or the `.bed` path.
pub fn write_plink(
    g: &PackedGenotypes,
    path: &Path,
    rows: Option<&[usize]>,
    cols: Option<&[usize]>,
) -> Result<()> {
    let paths = PlinkPaths::new(path);
    let all_rows: Vec<usize>;
    let rows = match rows {
        Some(r) => r,
        None => {
            all_rows = (0..g.n_individuals()).collect();
            &all_rows
        }
    };
    let identity = rows.len() == g.n_individuals() && rows.iter().enumerate().all(|(k, &i)| k == i);
    // PLINK's text files split on white space: a field holding some (or
    // none at all, or a quote or control character) would not read back as
    // written.
    let field_ok = |v: &str| {
        crate::textio::unwritable(v, crate::Delimiter::Whitespace).is_none()
            && !v.chars().any(char::is_whitespace)
    };
    for &i in rows {
        let ind = &g.individuals()[i];
        for (what, v) in [
            ("family ID", &ind.fid),
            ("individual ID", &ind.iid),
            ("father ID", &ind.father),
            ("mother ID", &ind.mother),
            ("sex", &ind.sex),
            ("phenotype", &ind.phenotype),
        ] {
            if !field_ok(v) {
                return Err(GenoError::invalid(
                    &paths.fam,
                    format!(
                        "the {what} '{}' of individual {} is empty or holds white space, a quote or a control character, which a .fam cannot hold; rename it (for example with underscores) before writing PLINK files",
                        v.escape_debug(),
                        i + 1
                    ),
                ));
            }
        }
    }
    let col_list: Vec<usize> = match cols {
        Some(c) => c.to_vec(),
        None => (0..g.n_markers()).collect(),
    };
    for &j in &col_list {
        let mk = &g.markers()[j];
        for (what, v) in [
            ("chromosome", &mk.chromosome),
            ("marker ID", &mk.id),
            ("genetic position", &mk.cm),
            ("allele A1", &mk.a1),
            ("allele A2", &mk.a2),
        ] {
            if !field_ok(v) {
                return Err(GenoError::invalid(
                    &paths.bim,
                    format!(
                        "the {what} '{}' of marker {} is empty or holds white space, a quote or a control character, which a .bim cannot hold; rename it before writing PLINK files",
                        v.escape_debug(),
                        j + 1
                    ),
                ));
            }
        }
    }

    let mut bed = AtomicFile::create(&paths.bed)?;
    let mut bim = AtomicFile::create(&paths.bim)?;
    bed.write_all(&BED_MAGIC)?;
    let mut buf = vec![0u8; rows.len().div_ceil(4)];
    let mut line = String::new();
    for j in col_list {
        if identity {
            bed.write_all(g.snp(j))?;
        } else {
            pack_subset(g.snp(j), rows, &mut buf);
            bed.write_all(&buf)?;
        }
        let mk = &g.markers()[j];
        line.clear();
        line.push_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\n",
            mk.chromosome, mk.id, mk.cm, mk.position, mk.a1, mk.a2
        ));
        bim.write_all(line.as_bytes())?;
    }
    let mut fam = AtomicFile::create(&paths.fam)?;
    for &i in rows {
        let ind = &g.individuals()[i];
        writeln!(
            fam.writer(),
            "{} {} {} {} {} {}",
            ind.fid,
            ind.iid,
            ind.father,
            ind.mother,
            ind.sex,
            ind.phenotype
        )
        .map_err(|e| GenoError::io(&paths.fam, e))?;
    }
    bed.commit()?;
    bim.commit()?;
    fam.commit()
}
