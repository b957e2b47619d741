//! `genocnn bench`: speed figures measured in-process, on one core.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use geno::{simulate, DelimitedOptions, PackedGenotypes, SimParams, Standardizer};
use serde_json::json;

use super::output::{median_after_first, table, write_json};
use super::train::with_engine;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Genotype input: .bed decoding to standardized f32 blocks, and CSV parsing.
    Io(IoArgs),
    /// Compute kernels: the convolution, pooling and dense layers of the genomic CNN and LeNet-5.
    Kernels(KernelArgs),
    /// Training speed: the peer genomic case (simulated SNPs, no validation split), as ../shared/peers times it.
    Train(TrainBenchArgs),
    /// Training speed of LeNet-5 on MNIST (batch 64, Adam), as ../shared/peers times it.
    Lenet(LenetBenchArgs),
    /// `explain`'s saliency on every individual, against two epochs of training on the same data.
    Explain(ExplainBenchArgs),
}

#[derive(Args, Debug)]
pub struct ExplainBenchArgs {
    /// Individuals.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Markers.
    #[arg(long, default_value_t = 10_000)]
    pub snps: usize,
    /// Model config.
    #[arg(long, default_value = "configs/cnn1d-pez.toml")]
    pub model: PathBuf,
    /// Repeats of each timing; the median is reported (after one warm-up epoch).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    #[command(flatten)]
    pub compute: super::train::ComputeArgs,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct LenetBenchArgs {
    /// MNIST folder (train-* and t10k-* IDX files, plain or .gz).
    #[arg(long, default_value = "../shared/data/mnist")]
    pub data_dir: PathBuf,
    /// Model config.
    #[arg(long, default_value = "configs/lenet5.toml")]
    pub model: PathBuf,
    /// Epochs: one warm-up, then the median of the rest is reported.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    #[command(flatten)]
    pub compute: super::train::ComputeArgs,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// Where `bench train`'s data come from.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BenchData {
    Peer,
    Simulate,
}

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// Individuals.
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Markers.
    #[arg(long, default_value_t = 10_000)]
    pub snps: usize,
    /// Model config.
    #[arg(long, default_value = "configs/peer-genomic.toml")]
    pub model: PathBuf,
    /// Epochs: one warm-up, then the median of the rest is reported.
    #[arg(long, default_value_t = 4)]
    pub epochs: usize,
    /// The data: `peer` draws them as ../shared/peers does (independent
    /// uniform 0/1/2 dosages, 200 QTL, h2 ≈ 0.5); `simulate` runs
    /// `genocnn simulate` (LD from 12 founder haplotypes), on which the
    /// peer network's first Adam steps overshoot and its ReLUs die.
    #[arg(long, value_enum, default_value_t = BenchData::Peer)]
    pub data: BenchData,
    #[command(flatten)]
    pub compute: super::train::ComputeArgs,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct KernelArgs {
    /// Repetitions of each case after one warm-up; the median is reported.
    #[arg(long, default_value_t = 7)]
    pub reps: usize,
    /// Only the cases whose name contains this.
    #[arg(long)]
    pub filter: Option<String>,
    /// The SIMD paths to time: `all` (every path this CPU runs, bf16
    /// included), or a list such as `avx512,avx512bf16`. With `avx512`, the
    /// GRM's int8 product (`gram_u8`) is timed too on each int8 path this
    /// CPU has (AMX-INT8, AVX512-VNNI), against that path's int8 peak.
    #[arg(long, default_value = "all")]
    pub paths: String,
    /// Also write {"paths": {PATH: {"peak_gflops", "cases": {NAME: {"seconds", "gflops", "fraction_of_peak"}}}}} as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct IoArgs {
    /// Individuals of the simulated set (ignored with --geno).
    #[arg(long, default_value_t = 2000)]
    pub n: usize,
    /// Markers of the simulated set (ignored with --geno).
    #[arg(long, default_value_t = 50_000)]
    pub snps: usize,
    /// Benchmark on this genotype file instead of a simulated set.
    #[arg(long)]
    pub geno: Option<PathBuf>,
    /// Repetitions of each timing; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Also write the figures as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.what {
        BenchWhat::Io(io) => run_io(io),
        BenchWhat::Kernels(k) => run_kernels(k),
        BenchWhat::Train(t) => run_train_bench(t),
        BenchWhat::Lenet(l) => run_lenet_bench(l),
        BenchWhat::Explain(e) => run_explain_bench(e),
    }
}

fn median_secs(reps: usize, mut f: impl FnMut()) -> f64 {
    let mut t: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn run_io(a: IoArgs) -> Result<()> {
    let g: PackedGenotypes = match &a.geno {
        Some(p) => geno::GenoReader::new(p).read()?,
        None => {
            simulate(&SimParams {
                n: a.n,
                snps: a.snps,
                chromosomes: 10,
                qtl: 10,
                missing: 0.01,
                ..Default::default()
            })?
            .genotypes
        }
    };
    let (n, m) = (g.n_individuals(), g.n_markers());
    let calls = (n * m) as f64;
    let st = Standardizer::fit(&g, None);

    // .bed decoding: all markers, in SNP-major blocks of 256 markers.
    let block = 256;
    let mut buf = vec![0f32; block * n];
    let mut sink = 0f32;
    let decode = median_secs(a.reps, || {
        let mut j = 0;
        while j < m {
            let k = block.min(m - j);
            g.decode_snp_major(j..j + k, &st.lut, &mut buf[..k * n]);
            sink += buf[k * n - 1];
            j += k;
        }
    });
    // Mini-batch decoding: 32 individuals × all markers.
    let rows: Vec<usize> = (0..n).step_by((n / 32).max(1)).take(32).collect();
    let mut batch = vec![0f32; rows.len() * m];
    let batch_t = median_secs(a.reps, || {
        g.decode_rows(&rows, 0..m, &st.lut, &mut batch);
        sink += batch[0];
    });

    // Files: .bed read and CSV parse.
    let dir = tempfile::tempdir()?;
    let bed = dir.path().join("bench.bed");
    let csv = dir.path().join("bench.csv");
    geno::write_plink(&g, &bed, None, None)?;
    geno::write_genotypes(&g, &csv)?;
    let bed_bytes = std::fs::metadata(&bed)?.len() as f64;
    let csv_bytes = std::fs::metadata(&csv)?.len() as f64;
    let bed_t = median_secs(a.reps, || {
        let r = geno::read_plink(&bed).expect("read bench .bed");
        sink += r.n_markers() as f32;
    });
    let csv_t = median_secs(a.reps.min(3), || {
        let r = geno::delim::read_delimited(&csv, DelimitedOptions::default())
            .expect("read bench .csv");
        sink += r.n_markers() as f32;
    });
    std::hint::black_box(sink);

    let value = json!({
        "n_individuals": n,
        "n_markers": m,
        "threads": 1,
        "cases": {
            "bed_decode_standardized": { "seconds": decode, "genotypes_per_second": calls / decode },
            "batch_decode_32": { "seconds": batch_t, "genotypes_per_second": (rows.len() * m) as f64 / batch_t },
            "bed_read": { "seconds": bed_t, "bytes": bed_bytes, "mb_per_second": bed_bytes / bed_t / 1e6 },
            "csv_parse": { "seconds": csv_t, "bytes": csv_bytes, "mb_per_second": csv_bytes / csv_t / 1e6 },
        }
    });
    print!(
        "{}",
        table(&[
            (
                "genotypes",
                format!("{n} individuals × {m} markers, one thread")
            ),
            (
                ".bed → standardized f32 blocks",
                format!(
                    "{:.2} G genotypes/s ({:.4} s)",
                    calls / decode / 1e9,
                    decode
                )
            ),
            (
                "mini-batch of 32 → f32",
                format!(
                    "{:.2} G genotypes/s ({:.5} s)",
                    (rows.len() * m) as f64 / batch_t / 1e9,
                    batch_t
                )
            ),
            (
                ".bed read into the packed store",
                format!(
                    "{:.0} MB/s ({:.4} s, {:.1} MB)",
                    bed_bytes / bed_t / 1e6,
                    bed_t,
                    bed_bytes / 1e6
                )
            ),
            (
                "CSV matrix parse",
                format!(
                    "{:.0} MB/s ({:.3} s, {:.1} MB)",
                    csv_bytes / csv_t / 1e6,
                    csv_t,
                    csv_bytes / 1e6
                )
            ),
        ])
    );
    if let Some(p) = &a.json {
        write_json(p, &value)?;
    }
    Ok(())
}

/// The paths `--paths` names: `all` (every path this CPU runs, the bf16
/// one included), or a comma-separated list.
fn kernel_paths(text: &str) -> Result<Vec<kernels::SimdPath>> {
    use kernels::SimdPath;
    if text == "all" {
        let mut v = SimdPath::available_bf16();
        v.extend(SimdPath::available());
        return Ok(v);
    }
    text.split(',')
        .map(|t| {
            let p: SimdPath = t
                .trim()
                .parse()
                .map_err(|e: String| anyhow::anyhow!("--paths: {e}"))?;
            if !p.is_available() {
                bail!("--paths: this CPU cannot run the {p} path");
            }
            Ok(p)
        })
        .collect()
}

fn run_kernels(a: KernelArgs) -> Result<()> {
    let paths = kernel_paths(&a.paths)?;
    let threads = rayon::current_num_threads();
    println!(
        "kernels on {} thread(s); median of {} runs after a warm-up. Peak: multiply-adds on registers only, on every thread (`kernels::peak`)",
        threads, a.reps
    );
    let mut by_path = serde_json::Map::new();
    for &path in &paths {
        let peak = kernels::peak::peak_gflops(path, 0.25);
        println!("\n{path}: peak {peak:.1} GFLOP/s");
        // The f32 peak, for the cases whose products stay f32 on this path.
        let fp32_peak = if path.is_bf16() {
            kernels::peak::peak_gflops(path.fp32(), 0.25)
        } else {
            peak
        };
        let mut cases = serde_json::Map::new();
        for mut case in kernels::cases::all() {
            if a.filter
                .as_ref()
                .is_some_and(|f| !case.name.contains(f.as_str()))
            {
                continue;
            }
            let secs = kernels::with_path(path, || {
                (case.run)();
                median_secs(a.reps, &mut case.run)
            });
            let gflops = case.flops / secs / 1e9;
            let (of, which) = if case.fp32_products && path.is_bf16() {
                (fp32_peak, "f32 peak")
            } else {
                (peak, "peak")
            };
            let share = if case.compute_bound {
                format!("{:>5.1}% of {which}", 100.0 * gflops / of)
            } else {
                format!("{:>14}", "memory-bound")
            };
            println!(
                "  {:<14} {:>10.3} ms {:>8.1} GFLOP/s  {share}   {}",
                case.name,
                secs * 1e3,
                gflops,
                case.what
            );
            cases.insert(
                case.name.to_string(),
                json!({
                    "seconds": secs,
                    "gflops": gflops,
                    "fraction_of_peak": case.compute_bound.then(|| gflops / of),
                }),
            );
        }
        by_path.insert(
            path.to_string(),
            json!({ "peak_gflops": peak, "cases": cases }),
        );
    }
    // The GRM's int8 product on each int8 path (AMX, VNNI), with the
    // AVX-512 path they belong to.
    if paths.contains(&kernels::SimdPath::Avx512)
        && a.filter
            .as_ref()
            .is_none_or(|f| GRAM_CASE.contains(f.as_str()))
    {
        for int8 in kernels::Int8Path::available() {
            by_path.insert(int8.to_string(), gram_case(int8, a.reps));
        }
    }
    if let Some(p) = &a.json {
        let value = json!({ "threads": threads, "paths": by_path });
        write_json(p, &value)?;
    }
    Ok(())
}

const GRAM_CASE: &str = "gram_u8";

/// Times the int8 Gram product X Xᵀ (lower triangle) of a 4096 × 16384
/// matrix of dosages 0–2, the GRM's integer product, against the int8
/// peak of `path`; prints a line and returns the JSON entry.
fn gram_case(path: kernels::Int8Path, reps: usize) -> serde_json::Value {
    let (n, k) = (4096, 16384);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let x: Vec<u8> = (0..n * k)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 3) as u8
        })
        .collect();
    let mut c = vec![0i32; n * n];
    let peak = kernels::peak::peak_int8_gproducts(path, 0.25);
    println!("\n{path} (int8): peak {peak:.1} G products/s (multiply-adds into int32)");
    let mut run = || kernels::gram_lower_u8(path, n, k, &x, k, &mut c, n, true);
    run();
    let secs = median_secs(reps, &mut run);
    let products = (n * (n + 1) / 2) as f64 * k as f64;
    let rate = products / secs / 1e9;
    println!(
        "  {:<14} {:>10.3} ms {:>8.1} G/s      {:>5.1}% of peak   X Xᵀ, lower triangle: {n} × {k} dosages (the GRM's integer product)",
        GRAM_CASE,
        secs * 1e3,
        rate,
        100.0 * rate / peak
    );
    json!({
        "peak_gproducts": peak,
        "cases": { GRAM_CASE: { "seconds": secs, "gproducts": rate, "fraction_of_peak": rate / peak } },
    })
}

fn run_train_bench(a: TrainBenchArgs) -> Result<()> {
    let engine = a.compute.apply()?;
    with_engine!(engine, b => train_bench_with(a, b))
}

fn train_bench_with<B: nn::Backend>(a: TrainBenchArgs, backend: B) -> Result<()> {
    let mut spec = model::ModelSpec::from_file(&a.model)?;
    spec.training.epochs = a.epochs.max(2);
    spec.training.val_fraction = 0.0;
    let (genotypes, phenotype) = match a.data {
        BenchData::Peer => geno::independent_uniform(a.n, a.snps, 200.min(a.snps), 0)?,
        BenchData::Simulate => {
            let sim = simulate(&SimParams {
                n: a.n,
                snps: a.snps,
                chromosomes: 10,
                qtl: 200,
                h2: 0.5,
                ..Default::default()
            })?;
            (sim.genotypes, sim.phenotype)
        }
    };
    let g = &genotypes;
    let all: Vec<usize> = (0..a.n).collect();
    let mut times = Vec::new();
    let network = model::build_network(backend, &spec, g.n_markers(), 0, 1)?;
    let opts = model::TrainOptions {
        profile: profiling(),
        ..Default::default()
    };
    let fitted = model::fit_with(
        network,
        &spec,
        g,
        &model::TraitData::single("y", &phenotype),
        &all,
        1,
        &opts,
        &mut |ev| {
            if let model::Event::Epoch(r) = ev {
                log_epoch(r.epoch, r.seconds, r.train_loss, &mut times);
            }
        },
    )?;
    print_profile(fitted.profile.as_ref());
    let median = median_after_first(&times);
    // Inference: all individuals, in `predict`'s batches of 64 (the peers
    // ask for batches of 256; at 64 genocnn's intermediates stay in cache).
    fitted.predict(g, &all)?;
    let start = Instant::now();
    let reps = 3;
    for _ in 0..reps {
        std::hint::black_box(fitted.predict(g, &all)?);
    }
    let infer = (reps * a.n) as f64 / start.elapsed().as_secs_f64();
    println!(
        "RESULT genocnn {}: warmup_epoch_s={:.3} epochs_s={:?} median_epoch_s={:.3} infer_samples_per_s={:.1} (batches of 64) backend={}",
        spec.name,
        times[0],
        times[1..].iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        median,
        infer,
        nn::Backend::name(&fitted.network.backend)
    );
    if let Some(p) = &a.json {
        write_json(
            p,
            &json!({"model": spec.name, "n": a.n, "snps": a.snps, "epoch_seconds": times, "median_epoch_seconds": median, "infer_samples_per_second": infer, "precision": nn::Backend::precision(&fitted.network.backend).to_string()}),
        )?;
    }
    Ok(())
}

fn run_explain_bench(a: ExplainBenchArgs) -> Result<()> {
    let engine = a.compute.apply_exact()?;
    with_engine!(engine, b => explain_bench_with(a, b))
}

fn explain_bench_with<B: nn::Backend>(a: ExplainBenchArgs, backend: B) -> Result<()> {
    let reps = a.reps.max(1);
    let mut spec = model::ModelSpec::from_file(&a.model)?;
    // Training as `train` runs it (its validation split included), one
    // warm-up epoch and then `reps` timed ones.
    spec.training.epochs = reps + 1;
    spec.training.patience = reps + 1;
    let sim = simulate(&SimParams {
        n: a.n,
        snps: a.snps,
        chromosomes: 5,
        qtl: 10,
        h2: 0.5,
        ..Default::default()
    })?;
    let g = &sim.genotypes;
    let all: Vec<usize> = (0..a.n).collect();
    let mut times = Vec::new();
    let data = model::TraitData::single("y", &sim.phenotype);
    let fitted = model::fit(backend, &spec, g, &data, &all, 1, &mut |ev| {
        if let model::Event::Epoch(r) = ev {
            log_epoch(r.epoch, r.seconds, r.train_loss, &mut times);
        }
    })?;
    let epoch = median_after_first(&times);
    let map = model::InputMap::identity(g.n_markers());
    let ex = explain::NetworkExplainer::new(&fitted, g, &map)?;
    let settings = explain::Settings::default();
    let mut sal = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        std::hint::black_box(ex.explain(
            &all,
            &[explain::Method::Saliency],
            &settings,
            None,
            &mut |_, _, _| {},
        )?);
        sal.push(t.elapsed().as_secs_f64());
    }
    sal.sort_by(f64::total_cmp);
    let saliency = sal[sal.len() / 2];
    let ratio = saliency / (2.0 * epoch);
    println!(
        "RESULT genocnn explain {} ({} × {}): saliency_s={saliency:.3} (runs {sal:?}) training_epoch_s={epoch:.3} saliency / two epochs = {ratio:.3} backend={}",
        spec.name,
        a.n,
        a.snps,
        nn::Backend::name(&fitted.network.backend)
    );
    if let Some(p) = &a.json {
        write_json(
            p,
            &json!({"model": spec.name, "n": a.n, "snps": a.snps, "saliency_seconds": saliency,
                    "saliency_runs": sal, "epoch_seconds": times, "median_epoch_seconds": epoch,
                    "saliency_over_two_epochs": ratio}),
        )?;
    }
    Ok(())
}

fn run_lenet_bench(a: LenetBenchArgs) -> Result<()> {
    let engine = a.compute.apply()?;
    with_engine!(engine, b => lenet_bench_with(a, b))
}

fn lenet_bench_with<B: nn::Backend>(a: LenetBenchArgs, backend: B) -> Result<()> {
    let mut spec = model::ModelSpec::from_file(&a.model)?;
    spec.training.epochs = a.epochs.max(2);
    spec.training.val_fraction = 0.0;
    // As the peers train: a constant learning rate.
    spec.training.schedule = nn::Schedule::Constant;
    let train = vision::read_mnist(&a.data_dir, "train")?;
    let test = vision::read_mnist(&a.data_dir, "t10k")?;
    let mut times = Vec::new();
    let opts = model::ImageOptions {
        dataset: "mnist".into(),
        profile: profiling(),
        ..Default::default()
    };
    let fitted = model::fit_images(backend, &spec, &train, &opts, 1, &mut |ev| {
        if let model::Event::Epoch(r) = ev {
            log_epoch(r.epoch, r.seconds, r.train_loss, &mut times);
        }
    })?;
    print_profile(fitted.profile.as_ref());
    let median = median_after_first(&times);
    fitted.evaluate(&test)?;
    let start = Instant::now();
    let e = fitted.evaluate(&test)?;
    let infer = test.len() as f64 / start.elapsed().as_secs_f64();
    println!(
        "RESULT genocnn lenet: warmup_epoch_s={:.3} epochs_s={:?} median_epoch_s={:.3} test_acc={:.4} after {} epochs infer_samples_per_s={:.1} (batch 256) backend={}",
        times[0],
        times[1..].iter().map(|t| (t * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
        median,
        e.accuracy,
        times.len(),
        infer,
        nn::Backend::name(&fitted.network.backend)
    );
    if let Some(p) = &a.json {
        write_json(
            p,
            &json!({"model": spec.name, "epoch_seconds": times, "median_epoch_seconds": median, "test_accuracy": e.accuracy, "infer_samples_per_second": infer, "precision": nn::Backend::precision(&fitted.network.backend).to_string()}),
        )?;
    }
    Ok(())
}

/// Prints an epoch's time and loss, and keeps the time.
fn log_epoch(epoch: usize, seconds: f64, loss: f64, times: &mut Vec<f64>) {
    eprintln!("  epoch {} {seconds:.3} s, loss {loss:.4}", epoch + 1);
    times.push(seconds);
}

/// Whether to time each layer: the environment variable GENOCNN_PROFILE,
/// read here and handed to the trainer.
fn profiling() -> bool {
    std::env::var_os("GENOCNN_PROFILE").is_some()
}

/// The time spent in each layer over the run, when profiled.
fn print_profile(profile: Option<&nn::Profile>) {
    let Some(profile) = profile else { return };
    for r in profile.rows() {
        let name = format!("{}{}", "  ".repeat(r.depth), r.path);
        if r.path.starts_with('(') {
            eprintln!("  {name:<28} {:<12} time    {:>7.3} s", r.kind, r.forward);
            continue;
        }
        eprintln!(
            "  {name:<28} {:<12} forward {:>7.3} s  backward {:>7.3} s",
            r.kind, r.forward, r.backward
        );
    }
}
