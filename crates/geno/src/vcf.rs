//! VCF and BCF input: `.vcf`, `.vcf.gz` (BGZF or plain gzip) and `.bcf`.
//!
//! The header and the records are read with `noodles`; the genotype column
//! of each record is decoded here, straight into the packed 2-bit store.
//!
//! Conventions, as plink2 `--vcf`/`--bcf` has them, so that a `.bed` made by
//! plink2 from the same file holds the same calls:
//! - a marker's A1 is the ALT allele and A2 the REF allele; a dosage counts
//!   ALT copies;
//! - a marker whose ID is `.` is named `chrom:pos:ref:alt`;
//! - individuals are the header's sample names (FID = IID = the name);
//! - sites with more than one ALT allele are skipped and counted.
//!
//! `GT` calls may be phased (`|`) or unphased (`/`). `.`, `./.` and `.|.` are
//! missing, and so is a call with one missing allele (`./1`). Haploid calls
//! are refused unless [`HaploidCalls::Homozygous`] says to read them as the
//! homozygote of their allele (inbred lines). `DS` dosages are stored as the
//! nearest of 0, 1 and 2 (the store holds 2-bit calls); how many were not
//! already whole is counted.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use noodles_vcf as vcf;

use crate::error::{GenoError, Result};
use crate::packed::{code_of, Individual, Marker, PackedGenotypes};

/// Which FORMAT field holds the calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VcfField {
    /// Hard calls (`GT`).
    #[default]
    Gt,
    /// Imputed ALT dosages (`DS`), rounded to the nearest of 0, 1 and 2.
    Ds,
}

impl VcfField {
    fn key(self) -> &'static str {
        match self {
            VcfField::Gt => "GT",
            VcfField::Ds => "DS",
        }
    }
}

/// What a haploid `GT` call (`0`, `1`) means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HaploidCalls {
    /// An error: the calls are read as diploid dosages.
    #[default]
    Refuse,
    /// Inbred lines: `0` is homozygous REF (dosage 0), `1` homozygous ALT (2).
    Homozygous,
}

/// How VCF and BCF files are read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcfOptions {
    pub field: VcfField,
    pub haploid: HaploidCalls,
}

/// What reading a VCF or BCF file did besides keeping calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcfSummary {
    /// Data lines (VCF) or records (BCF) read.
    pub records: usize,
    /// Sites with more than one ALT allele, skipped.
    pub multiallelic: usize,
    /// `DS` values that were not 0, 1 or 2 and were rounded.
    pub rounded: usize,
    /// Haploid calls read as homozygotes.
    pub haploid: usize,
    /// Calls with one allele missing (`./1`), read as missing.
    pub half_missing: usize,
    /// Whether the file was BCF.
    pub bcf: bool,
}

/// Where in a VCF or BCF file an error was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcfAt {
    /// The header (meta lines and `#CHROM` line).
    Header,
    /// A line of a VCF file (1-based, counting the header's lines).
    Line(usize),
    /// A record of a BCF file (1-based).
    Record(usize),
}

impl fmt::Display for VcfAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VcfAt::Header => f.write_str("header"),
            VcfAt::Line(n) => write!(f, "line {n}"),
            VcfAt::Record(n) => write!(f, "BCF record {n}"),
        }
    }
}

/// Whether `path` names a VCF or BCF file by its extension.
pub fn is_vcf_path(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    [".vcf", ".vcf.gz", ".vcf.bgz", ".bcf"]
        .iter()
        .any(|ext| name.ends_with(ext))
}

/// Reads a VCF or BCF file (plain, BGZF or gzip; told apart by content).
pub fn read_vcf(path: &Path, opts: VcfOptions) -> Result<(PackedGenotypes, VcfSummary)> {
    let file = File::open(path).map_err(|e| GenoError::io(path, e))?;
    let mut raw = BufReader::with_capacity(1 << 16, file);
    let gzip = raw
        .fill_buf()
        .map_err(|e| GenoError::io(path, e))?
        .starts_with(&[0x1f, 0x8b]);
    let mut input: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 16,
            Inflated::spawn(MultiGzDecoder::new(raw)),
        ))
    } else {
        Box::new(raw)
    };
    let head = input
        .fill_buf()
        .map_err(|e| stream_error(path, VcfAt::Header, e))?;
    if head.is_empty() {
        return Err(GenoError::Empty {
            path: path.into(),
            expected: "a VCF header (##fileformat=VCFv4.x) or BCF magic",
        });
    }
    if head.starts_with(b"BCF") {
        read_bcf_records(path, input, opts)
    } else {
        read_vcf_records(path, input, opts)
    }
}

/// A decompressed stream, inflated on a thread of its own one chunk ahead
/// of the parser: on two cores, reading a `.vcf.gz` costs the larger of the
/// two rather than their sum.
struct Inflated {
    chunks: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
    done: bool,
}

impl Inflated {
    const CHUNK: usize = 1 << 20;

    fn spawn(mut source: impl io::Read + Send + 'static) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || loop {
            let mut buf = vec![0u8; Self::CHUNK];
            let mut filled = 0;
            let result = loop {
                match source.read(&mut buf[filled..]) {
                    Ok(0) => break Ok(()),
                    Ok(k) => {
                        filled += k;
                        if filled == buf.len() {
                            break Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            buf.truncate(filled);
            let last = filled == 0 || result.is_err();
            let sent = match result {
                Ok(()) if filled == 0 => tx.send(Ok(Vec::new())),
                Ok(()) => tx.send(Ok(buf)),
                Err(e) => {
                    // The good bytes first, then the error where it struck.
                    if filled > 0 && tx.send(Ok(buf)).is_err() {
                        return;
                    }
                    tx.send(Err(e))
                }
            };
            // The reader hung up (an error upstream): stop inflating.
            if last || sent.is_err() {
                return;
            }
        });
        Inflated {
            chunks: rx,
            current: Vec::new(),
            at: 0,
            done: false,
        }
    }
}

impl io::Read for Inflated {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            if self.done {
                return Ok(0);
            }
            match self.chunks.recv() {
                Ok(Ok(chunk)) => {
                    self.done = chunk.is_empty();
                    self.current = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Err(_) => {
                    self.done = true;
                    return Ok(0);
                }
            }
        }
        let k = out.len().min(self.current.len() - self.at);
        out[..k].copy_from_slice(&self.current[self.at..self.at + k]);
        self.at += k;
        Ok(k)
    }
}

/// An I/O failure inside the stream: a truncated gzip is the usual cause.
fn stream_error(path: &Path, at: VcfAt, e: io::Error) -> GenoError {
    let message = match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "the file ends inside a record or a compressed block (truncated download?)".to_string()
        }
        io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData => {
            format!("cannot decode the file here: {e} (corrupt or truncated compression?)")
        }
        _ => return GenoError::io(path, e),
    };
    vcf_error(path, at, None, message)
}

fn vcf_error(
    path: &Path,
    at: VcfAt,
    sample: Option<&str>,
    message: impl Into<String>,
) -> GenoError {
    GenoError::Vcf {
        path: path.into(),
        at,
        sample: sample.map(str::to_string),
        message: message.into(),
    }
}

/// The calls of one site, packed as they are decoded.
struct Sites {
    stride: usize,
    markers: Vec<Marker>,
    /// The line (VCF) or record (BCF) of each marker.
    at: Vec<usize>,
    data: Vec<u8>,
    summary: VcfSummary,
}

impl Sites {
    fn new(n: usize, bcf: bool) -> Self {
        Sites {
            stride: n.div_ceil(4),
            markers: Vec::new(),
            at: Vec::new(),
            data: Vec::new(),
            summary: VcfSummary {
                bcf,
                ..VcfSummary::default()
            },
        }
    }

    /// Opens a row of missing-free zero bits for the next site.
    fn begin(&mut self) -> usize {
        let at = self.data.len();
        self.data.resize(at + self.stride, 0);
        at
    }

    fn set(&mut self, row: usize, i: usize, dosage: Option<u8>) {
        self.set_code(row, i, code_of(dosage));
    }

    #[inline]
    fn set_code(&mut self, row: usize, i: usize, code: u8) {
        self.data[row + i / 4] |= code << (2 * (i % 4));
    }

    fn finish(self, path: &Path, names: Vec<String>) -> Result<(PackedGenotypes, VcfSummary)> {
        crate::error::unique_markers(
            path,
            if self.summary.bcf {
                "BCF record"
            } else {
                "line"
            },
            self.markers
                .iter()
                .map(|m| m.id.as_str())
                .zip(self.at.iter().copied()),
        )?;
        let individuals = names.into_iter().map(Individual::from_id).collect();
        Ok((
            PackedGenotypes::from_packed(individuals, self.markers, self.data),
            self.summary,
        ))
    }
}

fn marker(chrom: &str, pos: i64, id: &str, reference: &str, alt: &str) -> Marker {
    let id = if id.is_empty() || id == "." {
        format!("{chrom}:{pos}:{reference}:{alt}")
    } else {
        id.to_string()
    };
    Marker {
        id,
        chromosome: chrom.to_string(),
        cm: "0".to_string(),
        position: pos,
        a1: alt.to_string(),
        a2: reference.to_string(),
    }
}

/// Why a call could not be read (the caller adds where).
enum CallError {
    Haploid,
    Ploidy(usize),
    Allele(String),
    Text,
    Dosage,
}

impl CallError {
    fn message(&self, call: &str, alts: usize, field: VcfField) -> String {
        match self {
            CallError::Haploid => format!(
                "the haploid call '{call}' cannot be read as a diploid dosage; for inbred lines called as haploids give --coding inbred (0 and 1 are read as the two homozygotes)"
            ),
            CallError::Ploidy(p) => {
                format!("the call '{call}' has {p} alleles; expected a diploid call such as 0/1")
            }
            CallError::Allele(a) => format!(
                "the call '{call}' names allele {a}, but the site has {alts} ALT allele{}",
                if alts == 1 { "" } else { "s" }
            ),
            CallError::Text => match field {
                VcfField::Gt => format!(
                    "cannot read '{call}' as a GT call; expected alleles such as 0/1 or 0|1, or . when missing"
                ),
                VcfField::Ds => format!(
                    "cannot read '{call}' as a DS dosage; expected a number from 0 to 2, or . when missing"
                ),
            },
            CallError::Dosage => {
                format!("the dosage '{call}' is outside 0 to 2")
            }
        }
    }
}

/// Combines the alleles of one call: `alleles` holds each allele's index
/// (None = missing).
fn dosage_of_alleles(
    alleles: &[Option<u32>],
    alts: u32,
    haploid: HaploidCalls,
    summary: &mut VcfSummary,
) -> std::result::Result<Option<u8>, CallError> {
    for a in alleles.iter().flatten() {
        if *a > alts {
            return Err(CallError::Allele(a.to_string()));
        }
    }
    match alleles {
        [a] => match a {
            None => Ok(None),
            Some(a) => match haploid {
                HaploidCalls::Refuse => Err(CallError::Haploid),
                HaploidCalls::Homozygous => {
                    summary.haploid += 1;
                    Ok(Some(2 * *a as u8))
                }
            },
        },
        [a, b] => match (a, b) {
            (Some(a), Some(b)) => Ok(Some((*a + *b) as u8)),
            (None, None) => Ok(None),
            _ => {
                summary.half_missing += 1;
                Ok(None)
            }
        },
        other => Err(CallError::Ploidy(other.len())),
    }
}

/// Marks a call [`simple_call`] leaves to [`gt_text`].
const NOT_SIMPLE: u8 = 0xff;

/// The 2-bit code of a diploid call of one-digit alleles `a` and `c` (0, 1
/// or `.`, both or neither missing) at a biallelic site, or [`NOT_SIMPLE`].
#[inline]
fn simple_call(a: u8, sep: u8, c: u8, alts: u32) -> u8 {
    if sep != b'/' && sep != b'|' {
        return NOT_SIMPLE;
    }
    let max = b'0' + alts as u8;
    match (a, c) {
        (b'.', b'.') => code_of(None),
        (b'0'..=b'1', b'0'..=b'1') if a <= max && c <= max => code_of(Some(a - b'0' + c - b'0')),
        _ => NOT_SIMPLE,
    }
}

/// The 2-bit code of a BCF diploid call of two int8 values (each
/// `(allele + 1) << 1 | phased`, 0 or 1 when missing), both alleles present
/// and at most `alts` or both missing, or [`NOT_SIMPLE`].
#[inline]
fn simple_bcf_call(x: u8, y: u8, alts: u32) -> u8 {
    let (a, b) = (x >> 1, y >> 1);
    if a == 0 && b == 0 {
        return code_of(None);
    }
    // A missing allele (0), the vector's end (0x81 >> 1 = 64) and alleles
    // beyond the site's are left to the general path.
    let max = alts as u8 + 1;
    if (1..=max).contains(&a) && (1..=max).contains(&b) {
        code_of(Some(a + b - 2))
    } else {
        NOT_SIMPLE
    }
}

/// A `GT` value of a VCF line.
fn gt_text(
    s: &[u8],
    alts: u32,
    haploid: HaploidCalls,
    summary: &mut VcfSummary,
) -> std::result::Result<Option<u8>, CallError> {
    let digit = |c: u8| match c {
        b'0' => Some(Some(0)),
        b'1' => Some(Some(1)),
        b'.' => Some(None),
        _ => None,
    };
    // The common case, `a/b` or `a|b` with one-digit alleles.
    if s.len() == 3 && (s[1] == b'/' || s[1] == b'|') {
        if let (Some(a), Some(b)) = (digit(s[0]), digit(s[2])) {
            return dosage_of_alleles(&[a, b], alts, haploid, summary);
        }
    }
    let mut alleles: [Option<u32>; 3] = [None; 3];
    let mut count = 0;
    for token in s.split(|&c| c == b'/' || c == b'|') {
        let allele = match token {
            b"." => None,
            t if !t.is_empty() && t.iter().all(u8::is_ascii_digit) => {
                match std::str::from_utf8(t).ok().and_then(|t| t.parse().ok()) {
                    Some(a) => Some(a),
                    None => return Err(CallError::Allele(String::from_utf8_lossy(t).into())),
                }
            }
            _ => return Err(CallError::Text),
        };
        if count < alleles.len() {
            alleles[count] = allele;
        }
        count += 1;
    }
    if count > 2 {
        return Err(CallError::Ploidy(count));
    }
    dosage_of_alleles(&alleles[..count], alts, haploid, summary)
}

/// A `DS` value, rounded to the nearest call.
fn dosage_value(v: f64, summary: &mut VcfSummary) -> std::result::Result<Option<u8>, CallError> {
    if !v.is_finite() || !(0.0..=2.0).contains(&v) {
        return Err(CallError::Dosage);
    }
    let r = v.round();
    if r != v {
        summary.rounded += 1;
    }
    Ok(Some(r as u8))
}

fn ds_text(s: &[u8], summary: &mut VcfSummary) -> std::result::Result<Option<u8>, CallError> {
    if s == b"." {
        return Ok(None);
    }
    let v: f64 = std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(CallError::Text)?;
    dosage_value(v, summary)
}

fn read_vcf_records(
    path: &Path,
    mut input: Box<dyn BufRead>,
    opts: VcfOptions,
) -> Result<(PackedGenotypes, VcfSummary)> {
    // The header's lines are gathered here, so that record errors can name
    // their line of the file.
    let mut text = String::new();
    let mut lines = 0usize;
    loop {
        let mut line = String::new();
        let read = input.read_line(&mut line).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData if !line.is_empty() || lines > 0 => vcf_error(
                path,
                VcfAt::Line(lines + 1),
                None,
                "the line is not UTF-8 text",
            ),
            _ => stream_error(path, VcfAt::Line(lines + 1), e),
        })?;
        if read == 0 {
            return Err(vcf_error(
                path,
                VcfAt::Header,
                None,
                format!(
                    "the file ends after {lines} lines without the #CHROM header line; expected a VCF header"
                ),
            ));
        }
        lines += 1;
        if lines == 1 && !line.starts_with("##fileformat=") {
            let first: String = line.trim_end().chars().take(40).collect();
            return Err(vcf_error(
                path,
                VcfAt::Line(1),
                None,
                format!("found '{first}'; a VCF file starts with ##fileformat=VCFv4.x"),
            ));
        }
        let is_chrom = line.starts_with("#CHROM");
        if !is_chrom && !line.starts_with("##") {
            return Err(vcf_error(
                path,
                VcfAt::Line(lines),
                None,
                "expected a ## meta line or the #CHROM header line",
            ));
        }
        text.push_str(&line);
        if is_chrom {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            break;
        }
    }
    let header: vcf::Header = text
        .parse()
        .map_err(|e| vcf_error(path, VcfAt::Header, None, format!("{e}")))?;
    let names: Vec<String> = header.sample_names().iter().cloned().collect();
    if names.is_empty() {
        return Err(vcf_error(
            path,
            VcfAt::Line(lines),
            None,
            "the #CHROM line names no samples; expected FORMAT and one column per sample",
        ));
    }
    let n = names.len();
    let mut sites = Sites::new(n, false);
    let mut reader = vcf::io::Reader::new(input);
    let mut record = vcf::Record::default();
    let key = opts.field.key();
    loop {
        let at = VcfAt::Line(lines + 1);
        let read = reader
            .read_record(&mut record)
            .map_err(|e| match e.kind() {
                io::ErrorKind::InvalidData => {
                    vcf_error(path, at, None, format!("malformed record: {e}"))
                }
                _ => stream_error(path, at, e),
            })?;
        if read == 0 {
            break;
        }
        lines += 1;
        sites.summary.records += 1;
        let alt = record.alternate_bases();
        let alt = alt.as_ref();
        if alt.contains(',') {
            sites.summary.multiallelic += 1;
            continue;
        }
        let alts = u32::from(alt != ".");
        let chrom = record.reference_sequence_name();
        let pos = match record.variant_start() {
            Some(Ok(p)) => usize::from(p) as i64,
            None => 0,
            Some(Err(e)) => return Err(vcf_error(path, at, None, format!("POS: {e}"))),
        };
        let samples = record.samples();
        let samples = samples.as_ref();
        let (format, columns) = samples.split_once('\t').unwrap_or((samples, ""));
        let Some(k) = format.split(':').position(|f| f == key) else {
            return Err(vcf_error(
                path,
                at,
                None,
                if format.is_empty() {
                    format!(
                        "the record has no FORMAT and sample columns; the header names {n} samples"
                    )
                } else {
                    format!(
                        "FORMAT is '{format}', without {key}{}",
                        if opts.field == VcfField::Gt {
                            " (for imputed dosages give --vcf-field DS)"
                        } else {
                            ""
                        }
                    )
                },
            ));
        };
        let row = sites.begin();
        let bytes = columns.as_bytes();
        let end = bytes.len();
        let fast = k == 0 && opts.field == VcfField::Gt;
        let mut p = 0usize;
        let mut i = 0usize;
        while p <= end && !bytes.is_empty() {
            if i == n {
                return Err(vcf_error(
                    path,
                    at,
                    None,
                    format!("the record has more than the {n} sample columns the header names"),
                ));
            }
            // The common call: `a/b` or `a|b`, one digit each, alone in its column.
            if fast && p + 3 <= end && (p + 3 == end || bytes[p + 3] == b'\t') {
                let code = simple_call(bytes[p], bytes[p + 1], bytes[p + 2], alts);
                if code != NOT_SIMPLE {
                    sites.set_code(row, i, code);
                    p += 4;
                    i += 1;
                    continue;
                }
            }
            let col_end = bytes[p..]
                .iter()
                .position(|&c| c == b'\t')
                .map_or(end, |q| p + q);
            let column = &bytes[p..col_end];
            let value = column.split(|&c| c == b':').nth(k).unwrap_or(b".");
            let call = match opts.field {
                VcfField::Gt => gt_text(value, alts, opts.haploid, &mut sites.summary),
                VcfField::Ds => ds_text(value, &mut sites.summary),
            };
            match call {
                Ok(d) => sites.set(row, i, d),
                Err(e) => {
                    return Err(vcf_error(
                        path,
                        at,
                        Some(&names[i]),
                        e.message(&String::from_utf8_lossy(value), alts as usize, opts.field),
                    ))
                }
            }
            i += 1;
            p = col_end + 1;
        }
        if i < n || columns.is_empty() {
            return Err(vcf_error(
                path,
                at,
                None,
                format!(
                    "the record has {} sample columns; the header names {n}",
                    if columns.is_empty() { 0 } else { i }
                ),
            ));
        }
        let id = record.ids();
        sites.at.push(lines);
        sites.markers.push(marker(
            chrom,
            pos,
            id.as_ref(),
            record.reference_bases(),
            alt,
        ));
    }
    sites.finish(path, names)
}

/// A BCF typed value's descriptor: its type code and length.
fn bcf_descriptor(src: &mut &[u8]) -> Option<(u8, usize)> {
    let (&b, rest) = src.split_first()?;
    *src = rest;
    let ty = b & 0x0f;
    let len = (b >> 4) as usize;
    if len < 15 {
        return Some((ty, len));
    }
    // An overflowed length: a typed integer follows.
    let (ty_len, n) = bcf_descriptor(src)?;
    if n != 1 {
        return None;
    }
    let v = bcf_int(src, ty_len)?;
    Some((ty, usize::try_from(v).ok()?))
}

fn bcf_width(ty: u8) -> Option<usize> {
    match ty {
        1 => Some(1),
        2 => Some(2),
        3 | 5 => Some(4),
        _ => None,
    }
}

fn bcf_int(src: &mut &[u8], ty: u8) -> Option<i64> {
    let w = bcf_width(ty)?;
    if src.len() < w || ty == 5 {
        return None;
    }
    let (v, rest) = src.split_at(w);
    *src = rest;
    Some(match w {
        1 => v[0] as i8 as i64,
        2 => i16::from_le_bytes([v[0], v[1]]) as i64,
        _ => i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as i64,
    })
}

/// A little-endian u32, or `None` at a clean end of the stream.
fn read_u32(r: &mut dyn BufRead) -> io::Result<Option<u32>> {
    let mut b = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut b[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => got += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Some(u32::from_le_bytes(b)))
}

/// Reads exactly `len` bytes into `buf`, growing it only as bytes arrive:
/// a corrupt length cannot make it allocate gigabytes up front.
fn read_len(r: &mut dyn BufRead, len: u32, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    r.take(u64::from(len)).read_to_end(buf)?;
    if buf.len() < len as usize {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// The fields of a BCF record's site data that a genotype store keeps.
struct BcfSite<'a> {
    chrom: i32,
    pos: i32,
    samples: usize,
    id: &'a [u8],
    alleles: Vec<&'a [u8]>,
}

impl<'a> BcfSite<'a> {
    fn parse(buf: &'a [u8]) -> Option<Self> {
        let fixed = buf.get(..24)?;
        let word =
            |k: usize| u32::from_le_bytes([fixed[k], fixed[k + 1], fixed[k + 2], fixed[k + 3]]);
        let chrom = word(0) as i32;
        let pos = word(4) as i32;
        let n_allele = (word(16) >> 16) as usize;
        let samples = (word(20) & 0x00ff_ffff) as usize;
        let mut src = &buf[24..];
        let id = bcf_string(&mut src)?;
        let mut alleles = Vec::with_capacity(n_allele.min(16));
        for _ in 0..n_allele {
            alleles.push(bcf_string(&mut src)?);
        }
        let id = if id.is_empty() { &b"."[..] } else { id };
        Some(BcfSite {
            chrom,
            pos,
            samples,
            id,
            alleles,
        })
    }
}

/// A typed BCF string (type 7), its padding NULs dropped.
fn bcf_string<'a>(src: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (ty, len) = bcf_descriptor(src)?;
    if ty != 7 && !(ty == 0 && len == 0) {
        return None;
    }
    if src.len() < len {
        return None;
    }
    let (s, rest) = src.split_at(len);
    *src = rest;
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    Some(&s[..end])
}

/// The BCF encoding's sentinels for an integer of `ty`: (missing, end of vector).
fn int_sentinels(ty: u8) -> (i64, i64) {
    match ty {
        1 => (i8::MIN as i64, i8::MIN as i64 + 1),
        2 => (i16::MIN as i64, i16::MIN as i64 + 1),
        _ => (i32::MIN as i64, i32::MIN as i64 + 1),
    }
}

fn read_bcf_records(
    path: &Path,
    input: Box<dyn BufRead>,
    opts: VcfOptions,
) -> Result<(PackedGenotypes, VcfSummary)> {
    let mut input = input;
    let header_error = |message: String| vcf_error(path, VcfAt::Header, None, message);
    let mut magic = [0u8; 5];
    input
        .read_exact(&mut magic)
        .map_err(|e| stream_error(path, VcfAt::Header, e))?;
    if &magic[..4] != b"BCF\x02" {
        return Err(header_error(format!(
            "the BCF magic is {:02x?}; expected BCF version 2 (42 43 46 02)",
            &magic[..4]
        )));
    }
    let l_text = read_u32(&mut input)
        .map_err(|e| stream_error(path, VcfAt::Header, e))?
        .ok_or_else(|| header_error("the file ends before the header".into()))?;
    let mut text = Vec::new();
    read_len(&mut input, l_text, &mut text).map_err(|e| stream_error(path, VcfAt::Header, e))?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| header_error("the header is not UTF-8 text".into()))?;
    let text = text.trim_end_matches('\0');
    let mut header: vcf::Header = text.parse().map_err(|e| header_error(format!("{e}")))?;
    // BCF names contigs, FORMAT keys and filters by their index in these
    // maps (IDX= where the header gives it, else the order of declaration).
    *header.string_maps_mut() = text
        .parse::<vcf::header::StringMaps>()
        .map_err(|e| header_error(format!("{e}")))?;
    let names: Vec<String> = header.sample_names().iter().cloned().collect();
    if names.is_empty() {
        return Err(header_error("the header names no samples".into()));
    }
    let n = names.len();
    let string_maps = header.string_maps();
    let key = opts.field.key();
    let Some(key_id) = string_maps.strings().get_index_of(key) else {
        return Err(header_error(format!(
            "the header declares no FORMAT field {key}"
        )));
    };
    let mut sites = Sites::new(n, true);
    let mut shared = Vec::new();
    let mut indiv = Vec::new();
    let mut alleles: Vec<Option<u32>> = Vec::with_capacity(2);
    let mut index = 0usize;
    loop {
        let at = VcfAt::Record(index + 1);
        let bad = |message: String| vcf_error(path, at, None, message);
        let stream = |e| stream_error(path, at, e);
        let Some(l_shared) = read_u32(&mut input).map_err(stream)? else {
            break;
        };
        let l_indiv = read_u32(&mut input)
            .map_err(stream)?
            .ok_or_else(|| stream(io::ErrorKind::UnexpectedEof.into()))?;
        read_len(&mut input, l_shared, &mut shared).map_err(stream)?;
        read_len(&mut input, l_indiv, &mut indiv).map_err(stream)?;
        index += 1;
        sites.summary.records += 1;
        let site = BcfSite::parse(&shared).ok_or_else(|| bad("malformed site data".into()))?;
        if site.alleles.len() > 2 {
            sites.summary.multiallelic += 1;
            continue;
        }
        let alts = site.alleles.len().saturating_sub(1);
        let text = |b: &[u8], what: &str| {
            std::str::from_utf8(b)
                .map(str::to_string)
                .map_err(|_| bad(format!("{what} is not text")))
        };
        let reference = match site.alleles.first() {
            Some(r) => text(r, "REF")?,
            None => ".".to_string(),
        };
        let alt = match site.alleles.get(1) {
            Some(a) => text(a, "ALT")?,
            None => ".".to_string(),
        };
        let id = text(site.id, "ID")?;
        let chrom = usize::try_from(site.chrom)
            .ok()
            .and_then(|c| string_maps.contigs().get_index(c))
            .ok_or_else(|| {
                bad(format!(
                    "CHROM is contig number {}, which the header does not declare",
                    site.chrom
                ))
            })?
            .to_string();
        let pos = i64::from(site.pos) + 1;
        if site.samples != n {
            return Err(bad(format!(
                "the record has {} samples; the header names {n}",
                site.samples
            )));
        }
        let mut src: &[u8] = &indiv;
        let mut found = None;
        while !src.is_empty() {
            let malformed = || bad("malformed FORMAT data".into());
            let (kt, kn) = bcf_descriptor(&mut src).ok_or_else(malformed)?;
            if kn != 1 {
                return Err(malformed());
            }
            let id = bcf_int(&mut src, kt).ok_or_else(malformed)?;
            let (ty, len) = bcf_descriptor(&mut src).ok_or_else(malformed)?;
            let width = bcf_width(ty).ok_or_else(|| {
                bad(format!(
                    "FORMAT field {id} has type code {ty}; expected integers or floats"
                ))
            })?;
            let size = width
                .checked_mul(len)
                .and_then(|s| s.checked_mul(n))
                .filter(|&s| s <= src.len())
                .ok_or_else(malformed)?;
            let (data, rest) = src.split_at(size);
            src = rest;
            if usize::try_from(id).ok() == Some(key_id) {
                found = Some((ty, len, width, data));
            }
        }
        let Some((ty, len, width, data)) = found else {
            return Err(bad(format!("the record has no {key} values")));
        };
        let row = sites.begin();
        let alts32 = alts as u32;
        for i in 0..n {
            // The common call: two int8 alleles of a biallelic site.
            if ty == 1 && len == 2 && opts.field == VcfField::Gt {
                let code = simple_bcf_call(data[2 * i], data[2 * i + 1], alts32);
                if code != NOT_SIMPLE {
                    sites.set_code(row, i, code);
                    continue;
                }
            }
            let value = &data[i * len * width..][..len * width];
            let call = match opts.field {
                VcfField::Gt => {
                    if ty == 5 {
                        return Err(bad(format!("{key} is stored as floats; expected integers")));
                    }
                    let (missing, end) = int_sentinels(ty);
                    alleles.clear();
                    let mut v = value;
                    for _ in 0..len {
                        let x = bcf_int(&mut v, ty).unwrap_or(end);
                        if x == end {
                            break;
                        }
                        alleles.push(if x == missing || (x >> 1) == 0 {
                            None
                        } else {
                            Some(((x >> 1) - 1) as u32)
                        });
                    }
                    if alleles.is_empty() {
                        Ok(None)
                    } else {
                        dosage_of_alleles(&alleles, alts32, opts.haploid, &mut sites.summary)
                    }
                }
                VcfField::Ds => {
                    if ty != 5 || len == 0 {
                        return Err(bad(format!("{key} is not stored as one float per sample")));
                    }
                    let bits = u32::from_le_bytes([value[0], value[1], value[2], value[3]]);
                    if bits == 0x7F80_0001 || bits == 0x7F80_0002 {
                        Ok(None)
                    } else {
                        dosage_value(f32::from_bits(bits) as f64, &mut sites.summary)
                    }
                }
            };
            match call {
                Ok(d) => sites.set(row, i, d),
                Err(e) => {
                    let shown = match opts.field {
                        VcfField::Gt => alleles
                            .iter()
                            .map(|a| a.map_or(".".to_string(), |a| a.to_string()))
                            .collect::<Vec<_>>()
                            .join("/"),
                        VcfField::Ds => {
                            f32::from_le_bytes([value[0], value[1], value[2], value[3]]).to_string()
                        }
                    };
                    return Err(vcf_error(
                        path,
                        at,
                        Some(&names[i]),
                        e.message(&shown, alts, opts.field),
                    ));
                }
            }
        }
        sites.at.push(index);
        sites
            .markers
            .push(marker(&chrom, pos, &id, &reference, &alt));
    }
    sites.finish(path, names)
}
