//! The GRM against a naive O(n²m) f64 computation, the spectral REML
//! against a brute-force likelihood over a grid of δ computed with explicit
//! matrix inverses, and SNP-BLUP against the GBLUP predictions.

use gblup::{reml, KernelChoice, Spectral};
use geno::{simulate, PackedGenotypes, SimParams};

fn small(n: usize, m: usize, missing: f64, seed: u64) -> (PackedGenotypes, Vec<f64>) {
    let s = simulate(&SimParams {
        n,
        snps: m,
        chromosomes: 2,
        qtl: 10,
        h2: 0.6,
        missing,
        seed,
        ..Default::default()
    })
    .unwrap();
    (s.genotypes, s.phenotype)
}

fn naive_grm(g: &PackedGenotypes) -> Vec<f64> {
    let (n, m) = (g.n_individuals(), g.n_markers());
    let mut out = vec![0f64; n * n];
    let mut denom = 0.0;
    for j in 0..m {
        let (mut s, mut c) = (0.0, 0.0);
        for i in 0..n {
            if let Some(d) = g.dosage(i, j) {
                s += d as f64;
                c += 2.0;
            }
        }
        let p = if c > 0.0 { s / c } else { 0.0 };
        denom += 2.0 * p * (1.0 - p);
        let z: Vec<f64> = (0..n)
            .map(|i| g.dosage(i, j).map_or(0.0, |d| d as f64 - 2.0 * p))
            .collect();
        for a in 0..n {
            for b in 0..n {
                out[a * n + b] += z[a] * z[b];
            }
        }
    }
    out.iter().map(|v| v / denom).collect()
}

#[test]
fn grm_equals_naive_computation() {
    for (n, m, miss) in [(37, 300, 0.0), (50, 2100, 0.03), (9, 5000, 0.1)] {
        let (g, _) = small(n, m, miss, 3);
        let grm = gblup::vanraden(&g);
        let want = naive_grm(&g);
        let worst = grm
            .kinship
            .data
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-5, "n={n} m={m}: max difference {worst}");
    }
}

/// Gauss–Jordan inverse with partial pivoting, and ln |det|.
fn inverse(a: &[f64], n: usize) -> (Vec<Vec<f64>>, f64) {
    let mut m: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row = a[i * n..(i + 1) * n].to_vec();
            row.extend((0..n).map(|j| if i == j { 1.0 } else { 0.0 }));
            row
        })
        .collect();
    let mut logdet = 0.0;
    for c in 0..n {
        let piv = (c..n)
            .max_by(|&x, &y| m[x][c].abs().total_cmp(&m[y][c].abs()))
            .unwrap();
        m.swap(c, piv);
        let d = m[c][c];
        logdet += d.abs().ln();
        for v in m[c].iter_mut() {
            *v /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r][c];
                if f != 0.0 {
                    let rowc = m[c].clone();
                    for (v, w) in m[r].iter_mut().zip(&rowc) {
                        *v -= f * w;
                    }
                }
            }
        }
    }
    (m.into_iter().map(|r| r[n..].to_vec()).collect(), logdet)
}

/// ln L_REML(δ) from explicit inverses: H = K + δI, σ² profiled out.
fn brute_loglik(k: &[f64], n: usize, y: &[f64], delta: f64) -> f64 {
    let h: Vec<f64> = (0..n * n)
        .map(|x| k[x] + if x / n == x % n { delta } else { 0.0 })
        .collect();
    let (hi, logdet_h) = inverse(&h, n);
    let hinv = |i: usize, j: usize| hi[i][j];
    let one = vec![1.0; n];
    let hy: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| hinv(i, j) * y[j]).sum())
        .collect();
    let h1: Vec<f64> = (0..n).map(|i| (0..n).map(|j| hinv(i, j)).sum()).collect();
    let a: f64 = one.iter().zip(&h1).map(|(x, z)| x * z).sum();
    let beta = h1.iter().zip(y).map(|(x, z)| x * z).sum::<f64>() / a;
    let r: Vec<f64> = y.iter().map(|v| v - beta).collect();
    let hr: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| hinv(i, j) * r[j]).sum())
        .collect();
    let q: f64 = r.iter().zip(&hr).map(|(x, z)| x * z).sum();
    let _ = hy;
    let dof = (n - 1) as f64;
    let s2 = q / dof;
    -0.5 * (dof * (2.0 * std::f64::consts::PI * s2).ln() + logdet_h + a.ln() - (n as f64).ln()
        + dof)
}

#[test]
fn spectral_reml_equals_brute_force_grid() {
    let (g, y) = small(60, 800, 0.0, 5);
    let grm = gblup::vanraden(&g);
    let n = 60;
    let eig = Spectral::new(&grm.kinship.data, n).unwrap();
    let prob = reml::Problem::new(&eig, &y, &[vec![1.0; n]]).unwrap();
    // The likelihood itself, at several δ.
    for &d in &[0.05, 0.3, 1.0, 4.0, 20.0] {
        let (ll, _, _) = prob.eval(d);
        let bf = brute_loglik(&grm.kinship.data, n, &y, d);
        assert!(
            (ll - bf).abs() < 1e-7 * bf.abs().max(1.0),
            "δ={d}: {ll} vs {bf}"
        );
    }
    // The optimum, against a fine grid of the brute-force likelihood.
    let fit = prob.fit().unwrap();
    let grid: Vec<f64> = (0..=2000)
        .map(|i| (-6.0 + 12.0 * i as f64 / 2000.0_f64).exp())
        .collect();
    let best = grid
        .iter()
        .map(|&d| (brute_loglik(&grm.kinship.data, n, &y, d), d))
        .fold(
            (f64::NEG_INFINITY, 0.0),
            |a, b| if b.0 > a.0 { b } else { a },
        );
    assert!(
        fit.loglik >= best.0 - 1e-6,
        "Brent {} below grid {}",
        fit.loglik,
        best.0
    );
    assert!(
        (fit.delta.ln() - best.1.ln()).abs() < 0.01,
        "δ {} vs grid {}",
        fit.delta,
        best.1
    );
    assert!((fit.h2 - 1.0 / (1.0 + fit.delta)).abs() < 1e-12);
    assert!(fit.h2_se > 0.0 && fit.h2_se < 1.0);
}

#[test]
fn snp_blup_reproduces_gblup_predictions() {
    let (g, mut y) = small(80, 1200, 0.02, 9);
    for v in y.iter_mut().skip(60) {
        *v = f64::NAN; // the last 20 are predicted, not trained on
    }
    let grm = gblup::vanraden(&g);
    let all: Vec<usize> = (0..80).collect();
    let fit = gblup::fit(&g, &grm, &y, &[], &all, &KernelChoice::VanRaden).unwrap();
    assert_eq!(fit.train.len(), 60);
    let eff = fit.snp_effects.as_ref().unwrap();
    for i in 0..80 {
        let u: f64 = (0..g.n_markers())
            .map(|j| g.dosage(i, j).map_or(0.0, |d| d as f64 - fit.centers[j]) * eff[j])
            .sum();
        assert!(
            (u - fit.gebv[i]).abs() < 1e-6 * (1.0 + u.abs()),
            "individual {i}: {u} vs {}",
            fit.gebv[i]
        );
    }
    // RKHS picks a bandwidth from its grid and predicts too.
    let rk = gblup::fit(&g, &grm, &y, &[], &all, &KernelChoice::rkhs()).unwrap();
    assert!(rk.theta.is_some() && rk.snp_effects.is_none());
    assert!(rk.gebv.iter().all(|v| v.is_finite()));
}

#[test]
fn covariates_enter_as_fixed_effects() {
    let (g, y) = small(300, 1000, 0.0, 13);
    let cov: Vec<f64> = (0..300).map(|i| ((i * 7919) % 101) as f64 / 10.0).collect();
    let y2: Vec<f64> = y.iter().zip(&cov).map(|(a, c)| a + 3.0 * c).collect();
    let grm = gblup::vanraden(&g);
    let all: Vec<usize> = (0..300).collect();
    let with = gblup::fit(
        &g,
        &grm,
        &y2,
        std::slice::from_ref(&cov),
        &all,
        &KernelChoice::VanRaden,
    )
    .unwrap();
    assert_eq!(with.reml.p, 2);
    assert!(
        (with.reml.beta[1] - 3.0).abs() < 0.1,
        "covariate effect {}",
        with.reml.beta[1]
    );
    let without = gblup::fit(&g, &grm, &y, &[], &all, &KernelChoice::VanRaden).unwrap();
    assert!(
        (with.reml.h2 - without.reml.h2).abs() < 0.02,
        "{} vs {}",
        with.reml.h2,
        without.reml.h2
    );
}
