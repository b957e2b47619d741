//! Output helpers: JSON and CSV files written atomically, terminal tables,
//! progress spinners.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

/// Creates the output directory.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the output directory {}", dir.display()))
}

/// An output folder made for a run: if the run fails before [`OutDir::keep`],
/// a folder this run created goes again, with whatever it holds, so that a
/// failed run leaves nothing behind. A folder that existed stays.
pub struct OutDir {
    path: std::path::PathBuf,
    created: bool,
    kept: bool,
}

impl OutDir {
    pub fn create(dir: &Path) -> Result<OutDir> {
        let created = !dir.exists();
        ensure_dir(dir)?;
        Ok(OutDir {
            path: dir.to_path_buf(),
            created,
            kept: false,
        })
    }

    /// The run succeeded: the folder stays.
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        if self.created && !self.kept {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The files an input path stands for: itself, and for a PLINK fileset
/// (`x.bed` or the prefix `x`) its .bed, .bim and .fam.
fn input_files(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![p.to_path_buf()];
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "bed" | "bim" | "fam" | "") {
        let stem = if ext.is_empty() {
            p.to_path_buf()
        } else {
            p.with_extension("")
        };
        for e in ["bed", "bim", "fam"] {
            let mut f = stem.clone().into_os_string();
            f.push(format!(".{e}"));
            out.push(f.into());
        }
    }
    out
}

/// Refuses an output file that is one of the inputs (it would be
/// overwritten): compared after resolving links and `..`.
pub fn refuse_input_as_output(out: &Path, inputs: &[(&str, &Path)]) -> Result<()> {
    let canon = |p: &Path| -> Option<std::path::PathBuf> {
        let parent = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Some(parent.canonicalize().ok()?.join(p.file_name()?))
    };
    let Some(o) = canon(out) else { return Ok(()) };
    for (flag, input) in inputs {
        for f in input_files(input) {
            if canon(&f).is_some_and(|c| c == o) {
                anyhow::bail!(
                    "--out {} is the {flag} input {}; it would be overwritten. Give another output path",
                    out.display(),
                    f.display()
                );
            }
        }
    }
    Ok(())
}

/// Writes pretty JSON atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    geno::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// A number for a CSV cell: NA when absent, else up to 6 decimals.
pub fn num(v: Option<f64>) -> String {
    let mut s = String::new();
    push_num(&mut s, v);
    s
}

/// Appends [`num`]'s text of `v` to `out`, without allocating.
pub fn push_num(out: &mut String, v: Option<f64>) {
    match v {
        Some(x) if x.is_finite() => {
            let start = out.len();
            fixed6(out, x);
            while out.ends_with('0') {
                out.pop();
            }
            if out.ends_with('.') {
                out.pop();
            }
            if matches!(&out[start..], "" | "-" | "-0") {
                out.truncate(start);
                out.push('0');
            }
        }
        _ => out.push_str("NA"),
    }
}

/// `x` with 6 decimals, as `format!("{x:.6}")` writes it. Where x·10⁶ is
/// far from a rounding tie (always, but for values within 10⁻⁶ of one
/// unit of 10⁻⁶ and a half), the rounded integer is exact, and written
/// directly (a `qc` of 358,499 markers writes a million of these);
/// otherwise the formatter decides.
fn fixed6(out: &mut String, x: f64) {
    let y = x.abs() * 1e6;
    let r = y.round();
    if y < 1e15 && ((y - y.floor()) - 0.5).abs() > 1e-6 {
        let r = r as u64;
        if x.is_sign_negative() {
            out.push('-');
        }
        let (int, frac) = (r / 1_000_000, r % 1_000_000);
        push_u64(out, int);
        let mut digits = [b'.', 0, 0, 0, 0, 0, 0];
        let mut f = frac;
        for d in digits[1..].iter_mut().rev() {
            *d = b'0' + (f % 10) as u8;
            f /= 10;
        }
        out.push_str(std::str::from_utf8(&digits).expect("ASCII digits"));
    } else {
        write!(out, "{x:.6}").expect("write to String");
    }
}

/// Appends the decimal digits of `v`, as `write!(out, "{v}")` does, without
/// the formatter's machinery (`qc` writes a position per marker).
pub fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).expect("ASCII digits"));
}

/// Appends `v` as `write!(out, "{v}")` does.
pub fn push_i64(out: &mut String, v: i64) {
    if v < 0 {
        out.push('-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `s` to a CSV line, quoted where needed (as [`csv_field`]).
pub fn push_csv_field(out: &mut String, s: &str) {
    if s.bytes().any(|b| matches!(b, b',' | b'"' | b'\n')) {
        out.push_str(&csv_field(s));
    } else {
        out.push_str(s);
    }
}

/// A CSV header: `first`, then `names` quoted where needed.
pub fn csv_header(first: &str, names: &[&str]) -> String {
    let mut h = first.to_string();
    for n in names {
        h.push(',');
        h.push_str(&csv_field(n));
    }
    h.push('\n');
    h
}

/// Quotes a CSV field when it needs it.
pub fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// A plain aligned table for the terminal.
pub fn table(rows: &[(&str, String)]) -> String {
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("  {k:<w$}  {v}\n"))
        .collect()
}

/// A spinner on stderr with a message (hidden when stderr is not a terminal).
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]").expect("valid template"),
    );
    pb.set_message(msg.into());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// A progress bar over one epoch's batches; its prefix names the epoch.
pub fn epoch_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} batches {msg} [{elapsed} < {eta}]",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// An epoch bar that follows training events: the caller formats each
/// epoch's report (a line to print, and a short note for the bar).
pub struct EpochProgress {
    pub bar: ProgressBar,
    epochs: usize,
    last: String,
}

impl EpochProgress {
    pub fn new() -> Self {
        EpochProgress {
            bar: epoch_bar(),
            epochs: 0,
            last: String::new(),
        }
    }

    pub fn on<R>(&mut self, ev: model::Event<R>, epoch_line: impl Fn(&R) -> (String, String)) {
        let bar = &self.bar;
        match ev {
            model::Event::Start {
                epochs,
                batches_per_epoch,
                n_train,
                n_val,
            } => {
                self.epochs = epochs;
                bar.set_length(batches_per_epoch as u64);
                bar.set_prefix(format!("epoch 1/{epochs}"));
                bar.println(format!("  {n_train} for fitting, {n_val} for validation"));
            }
            model::Event::Batch { epoch, batch, loss } => {
                bar.set_prefix(format!("epoch {}/{}", epoch + 1, self.epochs));
                bar.set_position(batch as u64 + 1);
                bar.set_message(format!("loss {loss:.4}{}", self.last));
            }
            model::Event::Epoch(r) => {
                let (line, note) = epoch_line(r);
                self.last = format!(" | last epoch: {note}");
                bar.println(line);
                bar.set_position(0);
            }
            model::Event::Checkpoint(_) => {}
        }
    }
}

/// The median of the epoch times after the first (warm-up) epoch, as the
/// peer benchmarks report it; the only epoch's time when there is one.
pub fn median_after_first(times: &[f64]) -> f64 {
    let mut rest = times[1.min(times.len().saturating_sub(1))..].to_vec();
    rest.sort_by(f64::total_cmp);
    rest.get(rest.len() / 2).copied().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::fixed6;

    /// The fast path writes what the formatter writes, on random values of
    /// every size, on values at and next to rounding ties, and on zeros.
    #[test]
    fn integers_are_written_as_the_formatter_writes_them() {
        let mut cases = vec![0i64, 1, -1, 9, 10, 99, 100, i64::MAX, i64::MIN, -1_000_000];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push((x as i64) >> (x % 60));
        }
        for v in cases {
            let mut got = String::from("x");
            super::push_i64(&mut got, v);
            assert_eq!(got, format!("x{v}"));
        }
        for s in ["plain", "a,b", "say \"hi\"", "two\nlines", ""] {
            let mut got = String::new();
            super::push_csv_field(&mut got, s);
            assert_eq!(got, super::csv_field(s));
        }
    }

    #[test]
    fn fixed6_writes_what_the_formatter_writes() {
        let mut z = 0x9e37_79b9_7f4a_7c15u64;
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            1.0,
            0.0000005,
            0.0000015,
            2.5e-7,
            -1e-7,
            123.4567885,
        ];
        for _ in 0..200_000 {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            let scale = 10f64.powi((z % 19) as i32 - 9);
            values.push((u - 0.3) * scale);
            // A tie in decimal, and its neighbours in binary.
            let t = ((z % 1_000_000) as f64 + 0.5) / 1e6;
            values.extend([
                t,
                f64::from_bits(t.to_bits() + 1),
                f64::from_bits(t.to_bits() - 1),
            ]);
        }
        for x in values {
            let mut got = String::new();
            fixed6(&mut got, x);
            assert_eq!(got, format!("{x:.6}"), "{x:e}");
        }
    }
}
