//! Genotype input speed: decoding the packed store to standardized f32
//! blocks, and parsing a CSV dosage matrix. `cargo bench --bench io`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use geno::delim::read_delimited;
use geno::{simulate, DelimitedOptions, SimParams, Standardizer};

fn io(c: &mut Criterion) {
    let sim = simulate(&SimParams {
        n: 2000,
        snps: 20_000,
        chromosomes: 10,
        qtl: 10,
        missing: 0.01,
        ..Default::default()
    })
    .expect("simulate");
    let g = sim.genotypes;
    let (n, m) = (g.n_individuals(), g.n_markers());
    let st = Standardizer::fit(&g, None);

    let mut group = c.benchmark_group("io");
    group.throughput(Throughput::Elements((n * m) as u64));
    let mut buf = vec![0f32; 256 * n];
    group.bench_function("bed_decode_standardized_2000x20000", |b| {
        b.iter(|| {
            let mut j = 0;
            while j < m {
                let k = 256.min(m - j);
                g.decode_snp_major(j..j + k, &st.lut, &mut buf[..k * n]);
                j += k;
            }
            buf[0]
        })
    });
    let rows: Vec<usize> = (0..32).map(|k| k * 61).collect();
    let mut batch = vec![0f32; 32 * m];
    group.throughput(Throughput::Elements((32 * m) as u64));
    group.bench_function("minibatch_decode_32x20000", |b| {
        b.iter(|| {
            g.decode_rows(&rows, 0..m, &st.lut, &mut batch);
            batch[0]
        })
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("g.csv");
    geno::write_genotypes(&g, &csv).expect("write csv");
    group.throughput(Throughput::Bytes(std::fs::metadata(&csv).unwrap().len()));
    group.sample_size(10);
    group.bench_function("csv_parse_2000x20000", |b| {
        b.iter(|| {
            read_delimited(&csv, DelimitedOptions::default())
                .expect("parse")
                .n_markers()
        })
    });
    group.finish();
}

criterion_group!(benches, io);
criterion_main!(benches);
