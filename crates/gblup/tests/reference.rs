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

fn max_difference(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

#[test]
fn grm_equals_naive_computation() {
    for (n, m, miss) in [(37, 300, 0.0), (50, 2100, 0.03), (9, 5000, 0.1)] {
        let (g, _) = small(n, m, miss, 3);
        let grm = gblup::vanraden(&g);
        let worst = max_difference(&grm.kinship.to_f64(), &naive_grm(&g));
        assert!(worst < 1e-5, "n={n} m={m}: max difference {worst}");
    }
}

/// Issue 17: the GRM in integers (for markers without missing calls, on a
/// CPU with an int8 path: AMX-INT8 or AVX512-VNNI) and in f32 (the rest, and
/// every marker on the f32 paths) each equal the naive f64 sum within 1e-6,
/// missing calls included, on every SIMD path and every int8 path this CPU
/// can run; with no missing call the integer path is exact to f64 rounding.
#[test]
fn grm_on_every_path_equals_naive_within_1e_6() {
    for (n, m, miss) in [(130, 3000, 0.0), (97, 4500, 0.0005), (70, 1500, 0.02)] {
        let (g, _) = small(n, m, miss, 11);
        let want = naive_grm(&g);
        let mut runs: Vec<(kernels::SimdPath, Option<kernels::Int8Path>)> =
            kernels::SimdPath::available()
                .into_iter()
                .map(|p| (p, kernels::with_path(p, kernels::Int8Path::current)))
                .collect();
        // The int8 paths that the detected one leaves out (VNNI where AMX
        // is chosen), on the AVX-512 path they run on.
        for int8 in kernels::Int8Path::available() {
            if !runs.iter().any(|r| r.1 == Some(int8)) {
                runs.push((kernels::SimdPath::Avx512, Some(int8)));
            }
        }
        for (path, int8) in runs {
            let grm = kernels::with_path(path, || {
                kernels::with_int8_path(int8, || {
                    assert_eq!(kernels::Int8Path::current(), int8);
                    gblup::vanraden(&g)
                })
            });
            let worst = max_difference(&grm.kinship.to_f64(), &want);
            // The integer path is exact: its f64 result differs from the
            // naive sum only by the f32 storage's rounding (half an ulp).
            let bound = if int8.is_some() && miss == 0.0 {
                want.iter().fold(0f64, |b, w| b.max(w.abs())) * f64::powi(2.0, -24) + 1e-12
            } else {
                1e-6
            };
            eprintln!("n={n} m={m} missing {miss}: {path} (int8 {int8:?}): {worst:.2e}");
            assert!(
                worst < bound,
                "n={n} m={m} missing {miss}, {path}, int8 {int8:?}: max difference {worst} (bound {bound})"
            );
        }
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
    let eig = Spectral::new(&grm.kinship.to_f64(), n).unwrap();
    let prob = reml::Problem::new(&eig, &y, &[vec![1.0; n]]).unwrap();
    // The likelihood itself, at several δ.
    for &d in &[0.05, 0.3, 1.0, 4.0, 20.0] {
        let (ll, _, _) = prob.eval(d);
        let bf = brute_loglik(&grm.kinship.to_f64(), n, &y, d);
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
        .map(|&d| (brute_loglik(&grm.kinship.to_f64(), n, &y, d), d))
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
    // The variances against the brute-force profile: σg² = q/(n − 1) at
    // δ̂, σe² = δ̂ σg², and h2 their share.
    let bf = brute_fit(&grm.kinship.to_f64(), n, &y, &[vec![1.0; n]], fit.delta);
    assert!(
        (fit.var_g - bf.var_g).abs() < 1e-9 * bf.var_g,
        "{} vs {}",
        fit.var_g,
        bf.var_g
    );
    assert!((fit.var_e - fit.delta * bf.var_g).abs() < 1e-9 * bf.var_g);
    let h2 = bf.var_g / (bf.var_g + fit.delta * bf.var_g);
    assert!((fit.h2 - h2).abs() < 1e-9, "{} vs {h2}", fit.h2);
    assert!(
        (fit.beta[0] - bf.beta[0]).abs() < 1e-8,
        "{:?} vs {:?}",
        fit.beta,
        bf.beta
    );
}

/// What the explicit-inverse computation gives at δ for fixed effects X
/// (columns): the REML log-likelihood, β̂ (GLS), σg² and H⁻¹(y − Xβ̂).
struct Brute {
    loglik: f64,
    beta: Vec<f64>,
    var_g: f64,
    hinv_r: Vec<f64>,
}

fn brute_fit(k: &[f64], n: usize, y: &[f64], x: &[Vec<f64>], delta: f64) -> Brute {
    let p = x.len();
    let h: Vec<f64> = (0..n * n)
        .map(|v| k[v] + if v / n == v % n { delta } else { 0.0 })
        .collect();
    let (hi, logdet_h) = inverse(&h, n);
    let hmul = |v: &[f64]| -> Vec<f64> {
        (0..n)
            .map(|i| (0..n).map(|j| hi[i][j] * v[j]).sum())
            .collect()
    };
    let hx: Vec<Vec<f64>> = x.iter().map(|c| hmul(c)).collect();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    let xthx: Vec<f64> = (0..p * p).map(|v| dot(&x[v / p], &hx[v % p])).collect();
    let xtx: Vec<f64> = (0..p * p).map(|v| dot(&x[v / p], &x[v % p])).collect();
    let (a_inv, logdet_a) = inverse(&xthx, p);
    let (_, logdet_xtx) = inverse(&xtx, p);
    let xthy: Vec<f64> = hx.iter().map(|c| dot(c, y)).collect();
    let beta: Vec<f64> = (0..p).map(|i| dot(&a_inv[i], &xthy)).collect();
    let r: Vec<f64> = (0..n)
        .map(|t| y[t] - (0..p).map(|i| x[i][t] * beta[i]).sum::<f64>())
        .collect();
    let hinv_r = hmul(&r);
    let q = dot(&r, &hinv_r);
    let dof = (n - p) as f64;
    let var_g = q / dof;
    let loglik = -0.5
        * (dof * (2.0 * std::f64::consts::PI * var_g).ln() + logdet_h + logdet_a - logdet_xtx
            + dof);
    Brute {
        loglik,
        beta,
        var_g,
        hinv_r,
    }
}

#[test]
fn h2_standard_error_is_the_curvature_of_the_brute_force_likelihood() {
    let (g, y) = small(60, 800, 0.0, 5);
    let n = 60;
    let grm = gblup::vanraden(&g);
    let eig = Spectral::new(&grm.kinship.to_f64(), n).unwrap();
    let x = [vec![1.0; n]];
    let fit = reml::Problem::new(&eig, &y, &x).unwrap().fit().unwrap();
    // ln L as a function of h2 (δ = (1 − h2)/h2, σ² profiled), from
    // explicit inverses; its second derivative by central differences with
    // a step 30 times the code's, extrapolated (Richardson).
    let l = |h: f64| brute_fit(&grm.kinship.to_f64(), n, &y, &x, (1.0 - h) / h).loglik;
    let h2 = fit.h2;
    let d2 = |s: f64| (l(h2 + s) - 2.0 * l(h2) + l(h2 - s)) / (s * s);
    let s = 3e-3f64.min(h2 / 3.0).min((1.0 - h2) / 3.0);
    let curv = (4.0 * d2(s / 2.0) - d2(s)) / 3.0;
    let se = (-1.0 / curv).sqrt();
    assert!(se.is_finite() && se > 0.0);
    assert!(
        (fit.h2_se - se).abs() < 0.01 * se,
        "h2 SE {} vs the brute-force curvature's {se}",
        fit.h2_se
    );
}

#[test]
fn blups_equal_a_direct_solve_of_the_mixed_model() {
    // û = σg² K V⁻¹ (y − Xβ̂) = K H⁻¹ (y − Xβ̂) with H = K + δI over the
    // training individuals, and K_test,train H⁻¹ (y − Xβ̂) for the others:
    // the BLUP from Henderson's equations, solved with an explicit inverse.
    let (g, mut y) = small(70, 900, 0.02, 21);
    let test: Vec<usize> = (50..70).collect();
    for &i in &test {
        y[i] = f64::NAN;
    }
    let grm = gblup::vanraden(&g);
    let all: Vec<usize> = (0..70).collect();
    let fit = gblup::fit(&g, &grm, &y, &[], &all, &KernelChoice::VanRaden).unwrap();
    let train: Vec<usize> = (0..50).collect();
    let kt: Vec<f64> = train
        .iter()
        .flat_map(|&i| train.iter().map(move |&j| (i, j)))
        .map(|(i, j)| grm.kinship.get(i, j))
        .collect();
    let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    let bf = brute_fit(&kt, 50, &yt, &[vec![1.0; 50]], fit.reml.delta);
    assert!((fit.reml.beta[0] - bf.beta[0]).abs() < 1e-8);
    for i in 0..70 {
        let u: f64 = train
            .iter()
            .zip(&bf.hinv_r)
            .map(|(&j, a)| grm.kinship.get(i, j) * a)
            .sum();
        assert!(
            (fit.gebv[i] - u).abs() < 1e-7 * (1.0 + u.abs()),
            "individual {i}: {} vs {u}",
            fit.gebv[i]
        );
    }
}

#[test]
fn the_likelihood_with_a_covariate_equals_the_brute_force_one() {
    let (g, y) = small(60, 800, 0.0, 8);
    let n = 60;
    let cov: Vec<f64> = (0..n).map(|i| ((i * 37) % 11) as f64 - 5.0).collect();
    let y: Vec<f64> = y.iter().zip(&cov).map(|(a, c)| a + 0.5 * c).collect();
    let grm = gblup::vanraden(&g);
    let eig = Spectral::new(&grm.kinship.to_f64(), n).unwrap();
    let x = [vec![1.0; n], cov];
    let prob = reml::Problem::new(&eig, &y, &x).unwrap();
    for &d in &[0.1, 0.7, 3.0] {
        let (ll, beta, var_g) = prob.eval(d);
        let bf = brute_fit(&grm.kinship.to_f64(), n, &y, &x, d);
        assert!(
            (ll - bf.loglik).abs() < 1e-8 * bf.loglik.abs(),
            "δ={d}: {ll} vs {}",
            bf.loglik
        );
        assert!((var_g - bf.var_g).abs() < 1e-9 * bf.var_g);
        for (b, w) in beta.iter().zip(&bf.beta) {
            assert!((b - w).abs() < 1e-8, "β {beta:?} vs {:?}", bf.beta);
        }
    }
}

#[test]
fn rkhs_kernel_bandwidth_and_choice_against_naive_computations() {
    let (g, mut y) = small(40, 600, 0.03, 17);
    for v in y.iter_mut().skip(32) {
        *v = f64::NAN;
    }
    let (n, m) = (g.n_individuals(), g.n_markers());
    // Squared distances between centred dosage vectors (missing at the
    // mean), summed marker by marker.
    let z: Vec<Vec<f64>> = (0..m)
        .map(|j| {
            let called: Vec<f64> = (0..n)
                .filter_map(|i| g.dosage(i, j))
                .map(f64::from)
                .collect();
            let mean = called.iter().sum::<f64>() / called.len().max(1) as f64;
            (0..n)
                .map(|i| g.dosage(i, j).map_or(0.0, |d| f64::from(d) - mean))
                .collect()
        })
        .collect();
    let d2: Vec<f64> = (0..n * n)
        .map(|v| z.iter().map(|c| (c[v / n] - c[v % n]).powi(2)).sum())
        .collect();
    let mut off: Vec<f64> = (0..n)
        .flat_map(|i| (0..i).map(move |j| (i, j)))
        .map(|(i, j)| d2[i * n + j])
        .collect();
    off.sort_by(f64::total_cmp);
    let median = off[off.len() / 2];
    let grm = gblup::vanraden(&g);
    let ours = gblup::grm::squared_distances(&grm);
    for (v, (o, w)) in ours.to_f64().iter().zip(&d2).enumerate() {
        assert!((o - w).abs() < 1e-6 * (1.0 + w), "d² at {v}");
    }
    let med = gblup::grm::median_offdiagonal(&ours);
    assert!((med - median).abs() < 1e-6 * median);
    // θ: the grid value whose kernel exp(−d²/(θ·median)) has the largest
    // REML likelihood, each maximized over a fine grid of δ by brute force.
    let train: Vec<usize> = (0..32).collect();
    let yt: Vec<f64> = train.iter().map(|&i| y[i]).collect();
    let thetas = [0.25, 0.5, 1.0, 2.0, 4.0];
    let best_of = |theta: f64| {
        let k: Vec<f64> = train
            .iter()
            .flat_map(|&i| train.iter().map(move |&j| (i, j)))
            .map(|(i, j)| (-d2[i * n + j] / (theta * median)).exp())
            .collect();
        (0..=400)
            .map(|t| (-8.0 + 16.0 * t as f64 / 400.0).exp())
            .map(|d| brute_fit(&k, 32, &yt, &[vec![1.0; 32]], d).loglik)
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let scores: Vec<f64> = thetas.iter().map(|&t| best_of(t)).collect();
    let want = thetas[(0..5)
        .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
        .unwrap()];
    let all: Vec<usize> = (0..n).collect();
    let rk = gblup::fit(&g, &grm, &y, &[], &all, &KernelChoice::rkhs()).unwrap();
    assert_eq!(rk.theta, Some(want), "likelihoods by θ: {scores:?}");
    let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    assert!(rk.reml.loglik >= top - 1e-4, "{} vs {top}", rk.reml.loglik);
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

/// Issue 17: the two-stage reduction (dense → band → tridiagonal → QL)
/// against faer's full eigendecomposition: the same eigenvalues, and the
/// same quadratic forms Σᵢ (Uᵀa)ᵢ (Uᵀb)ᵢ / (λᵢ + δ) = aᵀ(K + δI)⁻¹b, which
/// hold whatever the signs of U's columns or the basis of a repeated
/// eigenvalue. Sizes at the bandwidth ± 1 and its multiples and across
/// stage 1's 256-column panels, bandwidths
/// from 1 (already tridiagonal after stage 1) to 32, full-rank kernels and
/// rank-deficient GRMs (fewer markers than individuals: repeated zeros).
#[test]
fn two_stage_reduction_equals_the_full_eigendecomposition() {
    use faer::Mat;
    let mut seed = 20;
    for (n, m) in [
        (2, 50),
        (3, 40),
        (9, 400),
        (17, 300),
        (33, 500),
        (70, 20),
        (130, 2000),
        (600, 900),
    ] {
        seed += 1;
        let (g, y) = small(n, m, 0.0, seed);
        let k = gblup::vanraden(&g).kinship;
        let x2: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
        let vs: Vec<&[f64]> = vec![&y, &x2];
        let eig = Spectral::new(&k.to_f64(), n).unwrap();
        let mut want_values = eig.values.clone();
        want_values.sort_by(f64::total_cmp);
        let want_rot: Vec<Vec<f64>> = vs.iter().map(|v| eig.rotate(v)).collect();
        // n = 600 crosses the 256-column panels of stage 1's products.
        let bands: &[usize] = if n > 256 {
            &[32]
        } else {
            &[1, 2, 3, 8, 16, 32]
        };
        for &band in bands {
            let mat = Mat::from_fn(n, n, |i, j| k.get(i, j));
            let (values, rot) = gblup::tridiag::eigen_rotations_with_band(mat, &vs, band).unwrap();
            let mut got_values: Vec<f64> = values.iter().map(|l| l.max(0.0)).collect();
            got_values.sort_by(f64::total_cmp);
            let scale = want_values.last().copied().unwrap_or(1.0).max(1.0);
            assert!(
                max_difference(&got_values, &want_values) < 1e-10 * scale,
                "n={n} band {band}: eigenvalues differ by {}",
                max_difference(&got_values, &want_values)
            );
            for delta in [0.1, 1.0, 10.0] {
                for a in 0..2 {
                    for b in 0..2 {
                        let form = |vals: &[f64], r: &[Vec<f64>]| -> f64 {
                            (0..n)
                                .map(|i| r[a][i] * r[b][i] / (vals[i].max(0.0) + delta))
                                .sum()
                        };
                        let got = form(&values, &rot);
                        let want = form(&eig.values, &want_rot);
                        assert!(
                            (got - want).abs() < 1e-9 * want.abs().max(1.0),
                            "n={n} band {band} δ {delta}: form ({a}, {b}) {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}

/// REML from the tridiagonal T = QᵀKQ (an LDLᵀ factorization of T + δI at
/// each δ) against REML from faer's eigendecomposition: the same
/// likelihood at each δ, and the same fit, with an intercept alone and with
/// a covariate, on full-rank kernels and rank-deficient ones (fewer markers
/// than individuals). The eigenvalues are taken as they come: `Spectral`
/// clips the null space's at 0, where the f32-stored kernel leaves them at
/// ±1e-8, which moves the likelihood at δ = 10⁻⁴ by 2e-3.
#[test]
fn reml_from_the_tridiagonal_equals_reml_from_the_eigenvalues() {
    use gblup::reml::{Basis, Problem};
    let mut seed = 80;
    for (n, m) in [(12, 300), (70, 20), (150, 1000), (300, 120)] {
        seed += 1;
        let (g, y) = small(n, m, 0.0, seed);
        let k = gblup::vanraden(&g).kinship;
        let full = faer::Mat::from_fn(n, n, |i, j| k.get(i, j));
        let evd = full.self_adjoint_eigen(faer::Side::Lower).unwrap();
        let values: Vec<f64> = (0..n).map(|i| evd.S()[i]).collect();
        let rotate = |v: &[f64]| -> Vec<f64> {
            (0..n)
                .map(|c| (0..n).map(|t| evd.U()[(t, c)] * v[t]).sum())
                .collect()
        };
        let cov: Vec<f64> = (0..n).map(|i| (i as f64 * 0.3).sin()).collect();
        for x in [vec![vec![1.0; n]], vec![vec![1.0; n], cov.clone()]] {
            let mut vs: Vec<&[f64]> = vec![&y];
            vs.extend(x.iter().map(Vec::as_slice));
            let mat = faer::Mat::from_fn(n, n, |i, j| k.get(i, j));
            let red = gblup::tridiag::Reduction::new(mat, &vs, 32);
            let (d, e) = red.tridiagonal();
            let q = red.rotated();
            let tri =
                Problem::in_basis(Basis::Tridiagonal(d, e), q[0].clone(), q[1..].to_vec(), &x)
                    .unwrap();
            let ux = x.iter().map(|c| rotate(c)).collect();
            let want = Problem::from_rotated(&values, rotate(&y), ux, &x).unwrap();
            for delta in [1e-4, 0.05, 1.0, 30.0, 2e4] {
                let (lt, bt, st) = tri.eval(delta);
                let (lw, bw, sw) = want.eval(delta);
                assert!(
                    (lt - lw).abs() < 1e-8 * lw.abs().max(1.0),
                    "n={n} p={} δ {delta}: loglik {lt} vs {lw}",
                    x.len()
                );
                assert!((st - sw).abs() < 1e-8 * sw.abs(), "σg² {st} vs {sw}");
                assert!(max_difference(&bt, &bw) < 1e-8, "β {bt:?} vs {bw:?}");
            }
            let (ft, fw) = (tri.fit().unwrap(), want.fit().unwrap());
            assert!(
                (ft.h2 - fw.h2).abs() < 1e-6 && (ft.loglik - fw.loglik).abs() < 1e-8,
                "n={n}: {ft:?} vs {fw:?}"
            );
        }
    }
}

/// Stage 2 (the bulge chasing) is compiled for each SIMD path, with its
/// sums in the same order on all: every path this CPU can run gives the
/// scalar path's eigenvalues, rotations and BLUP solve bit for bit (sizes
/// across the bandwidth, its tails of 8 lanes, and stage 1's panels).
#[test]
fn the_reduction_is_the_same_on_every_simd_path() {
    use kernels::SimdPath;
    let mut seed = 60;
    for (n, m) in [(9, 100), (45, 30), (77, 500), (300, 400)] {
        seed += 1;
        let (g, y) = small(n, m, 0.0, seed);
        let k = gblup::vanraden(&g).kinship;
        let x2: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let run = |path: SimdPath| {
            kernels::with_path(path, || {
                let mat = faer::Mat::from_fn(n, n, |i, j| k.get(i, j));
                let red = gblup::tridiag::Reduction::new(mat, &[&y, &x2], 32);
                let (values, rot) = red.eigen().unwrap();
                let solved = red.solve_shifted(0.7, &red.rotated()[0]).unwrap();
                (values, rot, solved)
            })
        };
        let want = run(SimdPath::Scalar);
        for path in [SimdPath::Avx2, SimdPath::Avx512] {
            if !path.is_available() {
                eprintln!("{path}: not available on this CPU, not run");
                continue;
            }
            assert_eq!(run(path), want, "n={n}: {path} differs from scalar");
        }
    }
}

/// (K + δI)⁻¹v by Cholesky against the eigendecomposition's U D⁻¹ Uᵀ v.
#[test]
fn shifted_solve_equals_the_eigendecomposition() {
    let (g, y) = small(60, 40, 0.0, 5);
    let k = gblup::vanraden(&g).kinship;
    // The eigenvalues as they come, not clipped at 0 as `Spectral` clips
    // them: the kernel's rank is 40, and the f32-stored values leave its
    // null space's eigenvalues at ±1e-8 rather than ±1e-16.
    let full = faer::Mat::from_fn(60, 60, |i, j| k.get(i, j));
    let evd = full.self_adjoint_eigen(faer::Side::Lower).unwrap();
    let (u, values) = (evd.U(), evd.S());
    for delta in [0.05, 1.0, 20.0] {
        let want: Vec<f64> = (0..60)
            .map(|i| {
                (0..60)
                    .map(|c| {
                        let uy: f64 = (0..60).map(|t| u[(t, c)] * y[t]).sum();
                        u[(i, c)] * uy / (values[c] + delta)
                    })
                    .sum()
            })
            .collect();
        let mat = faer::Mat::from_fn(60, 60, |i, j| if j <= i { k.get(i, j) } else { 0.0 });
        let got = gblup::tridiag::solve_shifted(mat, delta, &y).unwrap();
        assert!(
            max_difference(&got, &want) < 1e-9,
            "δ {delta}: {}",
            max_difference(&got, &want)
        );
    }
}

/// The BLUP's (K + δI)⁻¹r through the kept reduction, Q (T + δI)⁻¹ Qᵀr,
/// against a naive dense solve (Gaussian elimination with partial pivoting,
/// written here): sizes around the bandwidth and stage 1's 256-column
/// panels, bandwidths 1 (no stage 2) to 32, a rank-deficient kernel (more
/// individuals than markers) and a full-rank one; r a combination of the
/// rotated vectors, as `fit` forms y − Xβ.
#[test]
fn reduction_solve_equals_a_dense_solve() {
    fn dense_solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
        let n = b.len();
        for c in 0..n {
            let p = (c..n)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap();
            a.swap(c, p);
            b.swap(c, p);
            let (top, rest) = a.split_at_mut(c + 1);
            let pivot = &top[c];
            let (bt, br) = b.split_at_mut(c + 1);
            for (row, bi) in rest.iter_mut().zip(br) {
                let f = row[c] / pivot[c];
                for (x, p) in row[c..].iter_mut().zip(&pivot[c..]) {
                    *x -= f * p;
                }
                *bi -= f * bt[c];
            }
        }
        let mut x = vec![0.0; n];
        for r in (0..n).rev() {
            let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
            x[r] = (b[r] - s) / a[r][r];
        }
        x
    }
    let mut seed = 40;
    for (n, m) in [(2, 30), (9, 400), (33, 20), (70, 500), (300, 200)] {
        seed += 1;
        let (g, y) = small(n, m, 0.0, seed);
        let k = gblup::vanraden(&g).kinship;
        let x2: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).cos()).collect();
        let bands: &[usize] = if n > 256 { &[32] } else { &[1, 2, 3, 8, 32] };
        for &band in bands {
            // Garbage above the diagonal: only the lower triangle is read.
            let mat = faer::Mat::from_fn(n, n, |i, j| if j <= i { k.get(i, j) } else { 7.0 });
            let red = gblup::tridiag::Reduction::new(mat, &[&y, &x2], band);
            let q = red.rotated();
            for (delta, beta) in [(0.05, 0.3), (1.0, -1.2), (20.0, 0.0)] {
                let r: Vec<f64> = (0..n).map(|i| y[i] - beta * x2[i]).collect();
                let qt_r: Vec<f64> = (0..n).map(|i| q[0][i] - beta * q[1][i]).collect();
                let got = red.solve_shifted(delta, &qt_r).unwrap();
                let a: Vec<Vec<f64>> = (0..n)
                    .map(|i| {
                        (0..n)
                            .map(|j| k.get(i, j) + if i == j { delta } else { 0.0 })
                            .collect()
                    })
                    .collect();
                let want = dense_solve(a, r);
                let scale = want.iter().fold(1f64, |s, v| s.max(v.abs()));
                assert!(
                    max_difference(&got, &want) < 1e-9 * scale,
                    "n={n} band {band} δ {delta}: {}",
                    max_difference(&got, &want)
                );
            }
        }
    }
}

/// The lower triangle of a GCTA binary file, as f64.
fn read_lower(path: &std::path::Path) -> Vec<f64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64)
        .collect()
}

#[test]
fn the_grm_written_by_row_panels_equals_the_naive_one() {
    let dir = tempfile::tempdir().unwrap();
    // Markers with missing calls and without, and more markers than a
    // block (2048), over several panels of at least 64 rows.
    for (n, m, miss) in [(203, 2500, 0.02), (150, 700, 0.0)] {
        let (g, _) = small(n, m, miss, 11);
        let prefix = dir.path().join(format!("p{n}"));
        let mut seen = Vec::new();
        let s =
            gblup::grm::write_gcta_streamed(&prefix, &g, 12 * n as u64 * 64, &mut |r| seen.push(r))
                .unwrap();
        assert!(s.panels >= 3, "{n}: {} panels", s.panels);
        assert_eq!(seen.last(), Some(&n));
        let naive = naive_grm(&g);
        let grm = read_lower(&prefix.with_extension("grm.bin"));
        let counts = read_lower(&prefix.with_extension("grm.N.bin"));
        assert_eq!(grm.len(), n * (n + 1) / 2);
        let mut k = 0;
        for i in 0..n {
            for j in 0..=i {
                let want = naive[i * n + j];
                assert!(
                    (grm[k] - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "{n}: G[{i},{j}] = {} ≠ {want}",
                    grm[k]
                );
                let both = (0..m)
                    .filter(|&t| g.dosage(i, t).is_some() && g.dosage(j, t).is_some())
                    .count();
                assert_eq!(counts[k], both as f64, "{n}: N[{i},{j}]");
                k += 1;
            }
        }
        let mean: f64 = (0..n).map(|i| naive[i * n + i]).sum::<f64>() / n as f64;
        assert!((s.mean_diagonal - mean).abs() < 1e-6);
        let ids = std::fs::read_to_string(prefix.with_extension("grm.id")).unwrap();
        assert_eq!(ids.lines().count(), n);
    }
}

/// The GRM is stored in f32 (`Kinship`). On the mouse data, REML's h2 for
/// CD8 and MCH from that GRM stays within 1e-6 of the h2 from an f64 GRM
/// computed here by an f64 matrix product of the centred dosages, both by
/// the spectral REML on the training kernel and by `fit` (the tridiagonal
/// path the commands take). Skipped, saying why, without ../shared.
#[test]
fn f32_storage_moves_mouse_h2_by_less_than_1e_6() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/mouse_hs1940");
    if !dir.join("mouse_hs1940.bed").exists() {
        eprintln!("skipped: {} is absent (the shared data)", dir.display());
        return;
    }
    let g = geno::GenoReader::new(dir.join("mouse_hs1940.bed"))
        .read()
        .unwrap();
    let pheno = geno::PhenoTable::read(&dir.join("mouse_hs1940.pheno.txt")).unwrap();
    let (n, m) = (g.n_individuals(), g.n_markers());
    // The f64 reference: K = Z Zᵀ / 2Σp(1 − p), Z the dosages minus 2p,
    // missing calls 0.
    let freqs = gblup::grm::allele_freqs(&g);
    let denom: f64 = freqs.iter().map(|p| 2.0 * p * (1.0 - p)).sum();
    let z = faer::Mat::from_fn(n, m, |i, j| {
        g.dosage(i, j).map_or(0.0, |d| d as f64 - 2.0 * freqs[j])
    });
    let k64 = &z * z.transpose() * faer::Scale(1.0 / denom);
    drop(z);
    let grm = gblup::vanraden(&g);
    let k32 = grm.kinship.to_f64();
    let worst = (0..n * n)
        .map(|q| (k32[q] - k64[(q / n, q % n)]).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-6, "the stored GRM is {worst} from the f64 one");
    let reml_h2 = |k: &dyn Fn(usize, usize) -> f64, train: &[usize], y: &[f64]| {
        let nt = train.len();
        let kt: Vec<f64> = (0..nt * nt)
            .map(|q| k(train[q / nt], train[q % nt]))
            .collect();
        let eig = Spectral::new(&kt, nt).unwrap();
        reml::Problem::new(&eig, y, &[vec![1.0; nt]])
            .unwrap()
            .fit()
            .unwrap()
            .h2
    };
    for (index, published) in [(1, Some(0.605729)), (6, None)] {
        let t = pheno
            .select(&geno::TraitSelector::Index(index), g.individuals())
            .unwrap();
        let train: Vec<usize> = (0..n).filter(|&i| !t.values[i].is_nan()).collect();
        let y: Vec<f64> = train.iter().map(|&i| t.values[i]).collect();
        let h64 = reml_h2(&|i, j| k64[(i, j)], &train, &y);
        let h32 = reml_h2(&|i, j| grm.kinship.get(i, j), &train, &y);
        let fit = gblup::fit(&g, &grm, &t.values, &[], &train, &KernelChoice::VanRaden).unwrap();
        eprintln!(
            "trait {index}: h2 {h64:.9} (f64 GRM), {h32:.9} (f32 GRM), {:.9} (fit)",
            fit.reml.h2
        );
        assert!(
            (h32 - h64).abs() < 1e-6,
            "trait {index}: {h32} against {h64}"
        );
        assert!(
            (fit.reml.h2 - h64).abs() < 1e-6,
            "trait {index}: fit {} against {h64}",
            fit.reml.h2
        );
        if let Some(p) = published {
            assert!((h64 - p).abs() < 1e-6, "trait {index}: {h64} against {p}");
        }
    }
}
