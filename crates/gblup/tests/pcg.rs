//! GBLUP by PCG (issue 18) against the exact solver (spectral REML and a
//! direct BLUP) at the same h2, its genotype products against dense loops,
//! and Haseman–Elston regression against its formula on the explicit GRM.

use gblup::pcg::{fit_pcg, he_regression, Genotypes, PcgOptions};
use gblup::KernelChoice;
use geno::{simulate, PackedGenotypes, SimParams};

fn data(n: usize, m: usize, missing: f64, seed: u64) -> (PackedGenotypes, Vec<f64>) {
    let s = simulate(&SimParams {
        n,
        snps: m,
        chromosomes: 3,
        qtl: 50,
        h2: 0.5,
        missing,
        seed,
        ..Default::default()
    })
    .unwrap();
    (s.genotypes, s.phenotype)
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

/// Z (centred, missing 0) as dense rows, written out naively.
fn dense_z(g: &PackedGenotypes) -> (Vec<Vec<f64>>, f64) {
    let (n, m) = (g.n_individuals(), g.n_markers());
    let mut z = vec![vec![0f64; m]; n];
    let mut denom = 0.0;
    for j in 0..m {
        let called: Vec<f64> = (0..n)
            .filter_map(|i| g.dosage(i, j))
            .map(f64::from)
            .collect();
        let p = called.iter().sum::<f64>() / (2.0 * called.len().max(1) as f64);
        denom += 2.0 * p * (1.0 - p);
        for (i, row) in z.iter_mut().enumerate() {
            row[j] = g.dosage(i, j).map_or(0.0, |d| f64::from(d) - 2.0 * p);
        }
    }
    (z, denom)
}

#[test]
fn genotype_products_equal_dense_loops() {
    // 1027 rows: tasks of 1024 rows and a last one ending inside a byte.
    let (g, _) = data(1027, 150, 0.05, 2);
    let (z, _) = dense_z(&g);
    let op = Genotypes::new(&g);
    let (n, m, k) = (1027, 150, 3);
    let v: Vec<f64> = (0..n * k).map(|e| ((e * 7919) % 13) as f64 - 6.0).collect();
    let u: Vec<f64> = (0..m * k)
        .map(|e| ((e * 104729) % 11) as f64 - 5.0)
        .collect();
    let ztv = op.zt_mul(&v, k);
    let zu = op.z_mul(&u, k, false);
    for j in 0..m {
        for c in 0..k {
            let want: f64 = (0..n).map(|i| z[i][j] * v[i * k + c]).sum();
            assert!(
                (ztv[j * k + c] - want).abs() < 1e-4 * (1.0 + want.abs()),
                "Z′V[{j},{c}]"
            );
        }
    }
    for i in 0..n {
        for c in 0..k {
            let want: f64 = (0..m).map(|j| z[i][j] * u[j * k + c]).sum();
            assert!(
                (zu[i * k + c] - want).abs() < 1e-4 * (1.0 + want.abs()),
                "ZU[{i},{c}]"
            );
        }
    }
}

#[test]
fn pcg_reproduces_the_exact_gblup_at_the_same_h2() {
    for (n, m, missing) in [(1200, 2500, 0.0), (900, 1500, 0.02)] {
        let (g, mut y) = data(n, m, missing, 7);
        // Every tenth individual is the test set.
        for i in (0..n).step_by(10) {
            y[i] = f64::NAN;
        }
        let train: Vec<usize> = (0..n).collect();
        let grm = gblup::vanraden(&g);
        let exact = gblup::fit(&g, &grm, &y, &[], &train, &KernelChoice::VanRaden).unwrap();
        let fit = fit_pcg(&g, &y, exact.reml.h2, PcgOptions::default()).unwrap();
        assert!(fit.residual <= 1e-6, "{n}: residual {}", fit.residual);
        let r = pearson(&exact.gebv, &fit.gebv);
        assert!(r >= 0.9999, "{n}: GEBV correlation {r}");
        let test: Vec<usize> = (0..n).step_by(10).collect();
        let pe: Vec<f64> = test.iter().map(|&i| exact.gebv[i]).collect();
        let pp: Vec<f64> = test.iter().map(|&i| fit.gebv[i]).collect();
        assert!(pearson(&pe, &pp) >= 0.9999, "{n}: test-set GEBV");
        let scale = exact.gebv.iter().map(|v| v.abs()).fold(0.0, f64::max);
        for (a, b) in exact.gebv.iter().zip(&fit.gebv) {
            assert!((a - b).abs() <= 1e-3 * scale, "{n}: GEBV {a} vs {b}");
        }
        assert!(
            (fit.mean - exact.reml.beta[0]).abs() < 1e-4,
            "{n}: intercept"
        );
        assert!(
            (fit.var_g / exact.reml.var_g - 1.0).abs() < 1e-3,
            "{n}: var_g"
        );
        eprintln!(
            "n = {n}: {} PCG iterations, GEBV r = {r:.7}",
            fit.iterations
        );
    }
}

#[test]
fn haseman_elston_matches_its_formula_on_the_explicit_grm() {
    let (g, y) = data(400, 2000, 0.01, 5);
    let (z, denom) = dense_z(&g);
    let n = 400;
    let mean = y.iter().sum::<f64>() / n as f64;
    let sd = (y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt();
    let ys: Vec<f64> = y.iter().map(|v| (v - mean) / sd).collect();
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..n {
        for j in 0..n {
            if i != j {
                let gij: f64 = z[i].iter().zip(&z[j]).map(|(a, b)| a * b).sum::<f64>() / denom;
                num += gij * ys[i] * ys[j];
                den += gij * gij;
            }
        }
    }
    let exact = num / den;
    let est = he_regression(&Genotypes::new(&g), &y, 200, 1).unwrap();
    assert!(
        (est - exact).abs() < 0.05 * exact.abs().max(0.1),
        "HE {est} vs {exact} on the explicit GRM"
    );
}

/// Issue 18's agreement figures at n = 5,000 (5,000 markers, 10% test):
/// PCG's GEBV correlate with the exact solver's at ≥ 0.9999, and
/// Monte-Carlo REML's h2 is within 0.01 of REML's.
#[test]
fn at_5000_individuals_pcg_and_monte_carlo_reml_reproduce_the_exact_solver() {
    let (n, m) = (5000, 5000);
    let (g, mut y) = data(n, m, 0.0, 3);
    for i in (0..n).step_by(10) {
        y[i] = f64::NAN;
    }
    let train: Vec<usize> = (0..n).collect();
    let exact = gblup::fit(
        &g,
        &gblup::vanraden(&g),
        &y,
        &[],
        &train,
        &KernelChoice::VanRaden,
    )
    .unwrap();
    let z = Genotypes::new(&g);
    let he = he_regression(&z, &y, 30, 1).unwrap();
    let mc = gblup::pcg::mc_reml(&z, &y, he, 25, 1).unwrap();
    let fit = gblup::pcg::fit_with(&z, &y, mc.h2, PcgOptions::default()).unwrap();
    let r = pearson(&exact.gebv, &fit.gebv);
    eprintln!(
        "n = 5000: REML h2 {:.4}, Monte-Carlo REML {:.4}, Haseman–Elston {he:.4}; GEBV r {r:.7}",
        exact.reml.h2, mc.h2
    );
    assert!(
        (mc.h2 - exact.reml.h2).abs() < 0.01,
        "h2 {} vs {}",
        mc.h2,
        exact.reml.h2
    );
    assert!(r >= 0.9999, "GEBV r {r}");
}
