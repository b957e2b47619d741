//! Per-marker attributions of a genomic model's predictions: the gradient
//! methods on a network's evaluation-mode input gradients, Grad-CAM on its
//! last convolutional layer, the SNP-BLUP effects of a linear model, and
//! permutation importance for any model.
//!
//! Every method gives one value per model marker: the mean over the chosen
//! individuals of the absolute attribution (summed over the input's
//! channels for one-hot inputs), except permutation importance, which is
//! the loss in r when the marker's window is shuffled (it can be negative).

use std::time::Instant;

use geno::PackedGenotypes;
use model::train::{outputs_to_predictions, BatchDecoder, InputMap};
use model::{Fitted, InputEncoding, LinearModel};
use nn::{Backend, Ctx, Network};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{ExplainError, Result};
use crate::geometry::{field_of, has_conv, Field};

/// An attribution method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// |∂ŷ/∂x|.
    Saliency,
    /// |x · ∂ŷ/∂x|.
    GradInput,
    /// Integrated Gradients from the training mean.
    IntegratedGradients,
    /// SmoothGrad: the gradient averaged over noisy copies of the input.
    SmoothGrad,
    /// Grad-CAM over the last convolutional layer, mapped to markers.
    GradCam,
    /// The loss in r when a window of markers is shuffled.
    Permutation,
    /// A linear model's |SNP-BLUP effect|.
    SnpBlup,
}

impl Method {
    /// The methods `--methods` accepts, in the order of the outputs.
    pub const CHOSEN: [Method; 6] = [
        Method::Saliency,
        Method::GradInput,
        Method::IntegratedGradients,
        Method::SmoothGrad,
        Method::GradCam,
        Method::Permutation,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Saliency => "saliency",
            Method::GradInput => "grad_input",
            Method::IntegratedGradients => "integrated_gradients",
            Method::SmoothGrad => "smoothgrad",
            Method::GradCam => "gradcam",
            Method::Permutation => "permutation",
            Method::SnpBlup => "snp_blup",
        }
    }

    /// Parses one name of `--methods`.
    pub fn parse(s: &str) -> Result<Method> {
        let t = s.trim().to_ascii_lowercase();
        Method::CHOSEN
            .into_iter()
            .find(|m| m.name() == t || (t == "ig" && *m == Method::IntegratedGradients))
            .ok_or_else(|| {
                ExplainError::Invalid(format!(
                    "unknown method '{s}'; expected one of {}",
                    Method::CHOSEN.map(Method::name).join(", ")
                ))
            })
    }
}

/// The methods' settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Integrated Gradients: steps of the midpoint rule at first.
    pub ig_steps: usize,
    /// Individuals whose completeness error exceeds this get twice the steps…
    pub ig_tolerance: f64,
    /// …up to this many.
    pub ig_max_steps: usize,
    /// SmoothGrad: noisy copies per individual.
    pub smoothgrad_samples: usize,
    /// SmoothGrad: the noise's sd as a fraction of each input's range.
    pub smoothgrad_noise: f64,
    /// Permutation: markers per shuffled window.
    pub perm_window: usize,
    /// Permutation: shuffles per window, averaged.
    pub perm_repeats: usize,
    /// Seeds the noise and the shuffles.
    pub seed: u64,
    /// Rows per forward pass.
    pub batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            ig_steps: 32,
            ig_tolerance: 0.005,
            ig_max_steps: 1024,
            smoothgrad_samples: 16,
            smoothgrad_noise: 0.15,
            perm_window: 10,
            perm_repeats: 1,
            seed: 1,
            batch: 128,
        }
    }
}

/// One method's values per model marker, and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct Attribution {
    pub method: Method,
    pub values: Vec<f64>,
    pub seconds: f64,
}

/// Integrated Gradients' completeness check: Σ attributions = f(x) − f(baseline).
#[derive(Clone, Debug, PartialEq)]
pub struct IgCheck {
    /// The worst |Σ − Δf| / max(|Δf|, floor) over the individuals: the
    /// relative error, except for individuals whose prediction is within
    /// `floor` of the baseline's, where a relative error means nothing.
    pub worst: f64,
    /// 1% of the sd of the explained outputs over the individuals.
    pub floor: f64,
    /// Individuals with |Δf| < floor.
    pub near_baseline: usize,
    pub median: f64,
    /// The most steps any individual needed.
    pub max_steps: usize,
    /// Individuals that needed more than the first steps.
    pub refined: usize,
    /// What the baseline is.
    pub baseline: &'static str,
}

/// The layer Grad-CAM looked at, and how positions became markers.
#[derive(Clone, Debug, PartialEq)]
pub struct GradCamLayer {
    pub path: String,
    pub kind: &'static str,
    pub channels: usize,
    pub positions: usize,
    /// `receptive_field` (from the layers' specs) or `interpolated`.
    pub mapping: &'static str,
}

/// Everything explaining one model gave.
#[derive(Clone, Debug, Default)]
pub struct Explanation {
    pub attributions: Vec<Attribution>,
    pub ig: Option<IgCheck>,
    pub gradcam: Option<GradCamLayer>,
    /// Permutation: r of the unshuffled predictions, and against what.
    pub permutation_base: Option<(f64, &'static str)>,
    /// Methods not defined for this model, and why.
    pub notes: Vec<String>,
}

impl Explanation {
    pub fn get(&self, m: Method) -> Option<&Attribution> {
        self.attributions.iter().find(|a| a.method == m)
    }

    /// Adds the sums `total` over `n` individuals as their means, timed from `t`.
    fn push_mean(&mut self, method: Method, total: &[f64], n: f64, t: Instant) {
        self.attributions.push(Attribution {
            method,
            values: total.iter().map(|a| a / n).collect(),
            seconds: t.elapsed().as_secs_f64(),
        });
    }

    /// Runs [`permutation`] on `p` and adds its values.
    fn add_permutation(
        &mut self,
        p: &dyn Predictor,
        rows: &[usize],
        observed: Option<&[f64]>,
        s: &Settings,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<()> {
        let t = Instant::now();
        let (values, base) = permutation(p, rows, observed, s, progress)?;
        self.permutation_base = Some(base);
        self.attributions.push(Attribution {
            method: Method::Permutation,
            values,
            seconds: t.elapsed().as_secs_f64(),
        });
        Ok(())
    }
}

/// A model's predictions from its decoded inputs (for permutation).
pub trait Predictor {
    fn channels(&self) -> usize;
    fn n_markers(&self) -> usize;
    /// Inputs of `rows`: rows × channels × markers.
    fn decode(&self, rows: &[usize]) -> Vec<f32>;
    /// Predictions of `n` decoded inputs.
    fn predict(&self, x: &[f32], n: usize) -> Result<Vec<f64>>;
}

/// Explains a trained network on the individuals `rows` of `g`, whose
/// markers map to the model's through `map`.
pub struct NetworkExplainer<'a, B: Backend> {
    fitted: &'a Fitted<B>,
    /// An unfused copy, so that each layer's output exists on its own.
    net: Network<B>,
    g: &'a PackedGenotypes,
    map: &'a InputMap,
    channels: usize,
    m: usize,
    width: usize,
}

impl<'a, B: Backend> NetworkExplainer<'a, B> {
    pub fn new(fitted: &'a Fitted<B>, g: &'a PackedGenotypes, map: &'a InputMap) -> Result<Self> {
        if fitted.traits.len() > 1 || !fitted.predictors.is_empty() {
            return Err(ExplainError::Invalid(format!(
                "model '{}' predicts {} trait(s) from {} predictor trait(s) besides the genotypes; explanations cover single-trait networks on genotypes alone",
                fitted.spec.name,
                fitted.traits.len(),
                fitted.predictors.len()
            )));
        }
        let src = &fitted.network;
        let net = crate::unfused_copy(src, &fitted.spec)?;
        let channels = src.input_shape[0];
        let m = src.input_shape[1];
        let width = src.output_shape.iter().product();
        Ok(NetworkExplainer {
            fitted,
            net,
            g,
            map,
            channels,
            m,
            width,
        })
    }

    fn decoder(&self) -> BatchDecoder<'a> {
        BatchDecoder::new(
            self.g,
            self.fitted.spec.input,
            &self.fitted.standardizer,
            self.map,
        )
    }

    fn out_shape(&self, n: usize) -> Vec<usize> {
        let mut s = vec![n];
        s.extend(&self.net.output_shape);
        s
    }

    /// Raw outputs of `n` inputs (rows × width).
    fn outputs(&self, x: Vec<f32>, n: usize) -> Result<Vec<f32>> {
        let be = &self.net.backend;
        let t = be.tensor(x, &[n, self.channels, self.m])?;
        Ok(be.to_vec(&self.net.predict(&t)?)?)
    }

    /// The explained output of each row: the regression output, or the
    /// predicted class's logit.
    fn classes(&self, out: &[f32]) -> Vec<usize> {
        out.chunks(self.width).map(model::image::argmax).collect()
    }

    /// The explained output of each of `n` inputs: the one output of a
    /// regression (no pass needed), else the predicted class.
    fn targets(&self, x: &[f32], n: usize) -> Result<Vec<usize>> {
        if self.width == 1 {
            return Ok(vec![0; n]);
        }
        Ok(self.classes(&self.outputs(x.to_vec(), n)?))
    }

    fn dy(&self, class: &[usize]) -> Result<B::Tensor> {
        let mut dy = vec![0f32; class.len() * self.width];
        for (r, &k) in class.iter().enumerate() {
            dy[r * self.width + k] = 1.0;
        }
        Ok(self.net.backend.tensor(dy, &self.out_shape(class.len()))?)
    }

    /// The explained outputs and their input gradients for `n` inputs.
    pub fn gradients(&self, x: Vec<f32>, class: &[usize]) -> Result<(Vec<f64>, Vec<f32>)> {
        let be = &self.net.backend;
        let n = class.len();
        let t = be.tensor(x, &[n, self.channels, self.m])?;
        let mut pass = self.net.forward(&t, &Ctx::eval().recording())?;
        let out = be.to_vec(&pass.output)?;
        let f = class
            .iter()
            .enumerate()
            .map(|(r, &k)| out[r * self.width + k] as f64)
            .collect();
        let dx = self.net.input_gradient(&mut pass, self.dy(class)?)?;
        Ok((f, be.to_vec(&dx)?))
    }

    /// The baseline of Integrated Gradients: the training mean, which is 0
    /// for standardized inputs; for one-hot inputs, the mean encoding of
    /// the explained individuals.
    fn baseline(&self, rows: &[usize], batch: usize) -> (Vec<f32>, &'static str) {
        let cm = self.channels * self.m;
        match self.fitted.spec.input {
            InputEncoding::Standardized => {
                (vec![0.0; cm], "training mean (0 in standardized units)")
            }
            InputEncoding::OneHot => {
                let mut dec = self.decoder();
                let mut sum = vec![0f64; cm];
                for chunk in rows.chunks(batch) {
                    let (x, _) = dec.decode(chunk);
                    for r in x.chunks(cm) {
                        for (s, &v) in sum.iter_mut().zip(r) {
                            *s += v as f64;
                        }
                    }
                }
                let n = rows.len().max(1) as f64;
                (
                    sum.iter().map(|&s| (s / n) as f32).collect(),
                    "mean one-hot encoding of the explained individuals",
                )
            }
        }
    }

    /// Runs `methods` on the individuals `rows`; `observed` (per individual
    /// of `g`) is what permutation importance correlates with.
    pub fn explain(
        &self,
        rows: &[usize],
        methods: &[Method],
        s: &Settings,
        observed: Option<&[f64]>,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Explanation> {
        if rows.is_empty() {
            return Err(ExplainError::Invalid("no individuals to explain".into()));
        }
        let batch = s.batch.max(1);
        let (m, c) = (self.m, self.channels);
        let cm = c * m;
        let n = rows.len() as f64;
        let mut ex = Explanation::default();
        let mut dec = self.decoder();
        let want = |k: Method| methods.contains(&k);

        if want(Method::Saliency) || want(Method::GradInput) {
            let t = Instant::now();
            let mut sal = vec![0f64; m];
            let mut gi = vec![0f64; m];
            for (bi, chunk) in rows.chunks(batch).enumerate() {
                progress("saliency", bi * batch, rows.len());
                let (x, _) = dec.decode(chunk);
                let class = self.targets(&x, chunk.len())?;
                let (_, dx) = self.gradients(x.clone(), &class)?;
                for r in 0..chunk.len() {
                    for j in 0..m {
                        let (mut a, mut b) = (0f64, 0f64);
                        for ch in 0..c {
                            let k = r * cm + ch * m + j;
                            a += (dx[k] as f64).abs();
                            b += dx[k] as f64 * x[k] as f64;
                        }
                        sal[j] += a;
                        gi[j] += b.abs();
                    }
                }
            }
            let secs = t.elapsed().as_secs_f64();
            for (k, v) in [(Method::Saliency, sal), (Method::GradInput, gi)] {
                if want(k) {
                    ex.attributions.push(Attribution {
                        method: k,
                        values: v.iter().map(|a| a / n).collect(),
                        seconds: secs,
                    });
                }
            }
        }

        if want(Method::IntegratedGradients) {
            let t = Instant::now();
            let (base, what) = self.baseline(rows, batch);
            // The scale of the explained outputs, for the error's floor.
            let mut f = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(batch) {
                let (x, _) = dec.decode(chunk);
                let out = self.outputs(x, chunk.len())?;
                let class = self.classes(&out);
                f.extend(
                    class
                        .iter()
                        .enumerate()
                        .map(|(r, &k)| out[r * self.width + k] as f64),
                );
            }
            let mean = f.iter().sum::<f64>() / n;
            let sd = (f.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
            let floor = (0.01 * sd).max(1e-9);
            let mut total = vec![0f64; m];
            let mut errors = Vec::with_capacity(rows.len());
            let (mut max_steps, mut refined, mut near_baseline) = (0usize, 0usize, 0usize);
            for (bi, chunk) in rows.chunks(batch).enumerate() {
                progress("integrated gradients", bi * batch, rows.len());
                let (x, _) = dec.decode(chunk);
                let class = self.targets(&x, chunk.len())?;
                for (r, &k) in class.iter().enumerate() {
                    let xr = &x[r * cm..(r + 1) * cm];
                    let (attr, err, steps, delta) = self.integrated(xr, &base, k, s, floor)?;
                    near_baseline += usize::from(delta.abs() < floor);
                    max_steps = max_steps.max(steps);
                    refined += usize::from(steps > s.ig_steps);
                    errors.push(err);
                    for (t, a) in total.iter_mut().zip(attr) {
                        *t += a.abs();
                    }
                }
            }
            errors.sort_by(f64::total_cmp);
            ex.ig = Some(IgCheck {
                worst: *errors.last().unwrap_or(&0.0),
                floor,
                near_baseline,
                median: errors[errors.len() / 2],
                max_steps,
                refined,
                baseline: what,
            });
            ex.push_mean(Method::IntegratedGradients, &total, n, t);
        }

        if want(Method::SmoothGrad) {
            let t = Instant::now();
            let samples = s.smoothgrad_samples.max(1);
            let mut total = vec![0f64; m];
            for (bi, chunk) in rows.chunks(batch).enumerate() {
                progress("smoothgrad", bi * batch, rows.len());
                let (x, _) = dec.decode(chunk);
                let class = self.targets(&x, chunk.len())?;
                // Each individual's noise comes from its own stream.
                let mut rngs: Vec<ChaCha8Rng> = chunk
                    .iter()
                    .map(|&i| ChaCha8Rng::seed_from_u64(mix(s.seed, i as u64)))
                    .collect();
                let sd: Vec<f32> = x
                    .chunks(cm)
                    .map(|r| {
                        let (lo, hi) =
                            r.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |a, &v| {
                                (a.0.min(v), a.1.max(v))
                            });
                        (s.smoothgrad_noise as f32) * (hi - lo).max(0.0)
                    })
                    .collect();
                let mut sum = vec![0f64; x.len()];
                for _ in 0..samples {
                    let mut noisy = x.clone();
                    for (r, rng) in rngs.iter_mut().enumerate() {
                        for v in &mut noisy[r * cm..(r + 1) * cm] {
                            let e: f32 = StandardNormal.sample(rng);
                            *v += sd[r] * e;
                        }
                    }
                    let (_, dx) = self.gradients(noisy, &class)?;
                    for (a, &d) in sum.iter_mut().zip(&dx) {
                        *a += d as f64;
                    }
                }
                for r in 0..chunk.len() {
                    for (j, t) in total.iter_mut().enumerate() {
                        let mut a = 0f64;
                        for ch in 0..c {
                            a += (sum[r * cm + ch * m + j] / samples as f64).abs();
                        }
                        *t += a;
                    }
                }
            }
            ex.push_mean(Method::SmoothGrad, &total, n, t);
        }

        if want(Method::GradCam) && self.cam_layer().is_err() {
            ex.notes.push(format!(
                "gradcam: model '{}' has no convolutional layer before its output",
                self.fitted.spec.name
            ));
        } else if want(Method::GradCam) {
            let t = Instant::now();
            let (values, layer) = self.gradcam(rows, batch, &mut dec, progress)?;
            ex.gradcam = Some(layer);
            ex.attributions.push(Attribution {
                method: Method::GradCam,
                values,
                seconds: t.elapsed().as_secs_f64(),
            });
        }

        if want(Method::Permutation) {
            ex.add_permutation(self, rows, observed, s, progress)?;
        }
        Ok(ex)
    }

    /// Integrated Gradients of one input (channels × markers) for output
    /// `class`: the path from `base` to `x` cut into `ig_steps` equal
    /// pieces, each integrated by the midpoint rule; while the completeness
    /// error exceeds the tolerance, the pieces whose own error (the change
    /// of the output across the piece against the midpoint estimate) is
    /// largest are halved, up to `ig_max_steps` gradient evaluations. Kinks
    /// of ReLU and max pooling along the path are where the pieces shrink.
    /// The error is |Σ − Δf| / max(|Δf|, `floor`). Returns the per-marker
    /// attributions, the error, the gradient evaluations used and Δf.
    pub fn integrated(
        &self,
        x: &[f32],
        base: &[f32],
        class: usize,
        s: &Settings,
        floor: f64,
    ) -> Result<(Vec<f64>, f64, usize, f64)> {
        struct Piece {
            a: f64,
            b: f64,
            fa: f64,
            fb: f64,
            fm: f64,
            grad: Vec<f32>,
            est: f64,
        }
        let (m, c) = (self.m, self.channels);
        let cm = c * m;
        let diff: Vec<f64> = x.iter().zip(base).map(|(&u, &v)| (u - v) as f64).collect();
        let point = |alpha: f64| -> Vec<f32> {
            x.iter()
                .zip(base)
                .map(|(&xv, &bv)| bv + alpha as f32 * (xv - bv))
                .collect()
        };
        // Gradients and outputs at points along the path, in batches.
        let eval = |alphas: &[f64]| -> Result<Vec<(f64, Vec<f32>)>> {
            let mut out = Vec::with_capacity(alphas.len());
            for chunk in alphas.chunks(s.batch.max(1)) {
                let xb: Vec<f32> = chunk.iter().flat_map(|&al| point(al)).collect();
                let (f, dx) = self.gradients(xb, &vec![class; chunk.len()])?;
                out.extend(f.into_iter().zip(dx.chunks(cm).map(|r| r.to_vec())));
            }
            Ok(out)
        };
        let piece = |a: f64, b: f64, fa: f64, fb: f64, (fm, grad): (f64, Vec<f32>)| {
            let est = grad
                .iter()
                .zip(&diff)
                .map(|(&g, &d)| g as f64 * d)
                .sum::<f64>()
                * (b - a);
            Piece {
                a,
                b,
                fa,
                fb,
                fm,
                grad,
                est,
            }
        };
        let n0 = s.ig_steps.max(1);
        let ends: Vec<f64> = (0..=n0).map(|i| i as f64 / n0 as f64).collect();
        let mut fe = Vec::with_capacity(n0 + 1);
        for chunk in ends.chunks(s.batch.max(1)) {
            let xb: Vec<f32> = chunk.iter().flat_map(|&al| point(al)).collect();
            let out = self.outputs(xb, chunk.len())?;
            fe.extend((0..chunk.len()).map(|r| out[r * self.width + class] as f64));
        }
        let delta = fe[n0] - fe[0];
        let mids: Vec<f64> = (0..n0).map(|i| (ends[i] + ends[i + 1]) / 2.0).collect();
        let mut pieces: Vec<Piece> = eval(&mids)?
            .into_iter()
            .enumerate()
            .map(|(i, e)| piece(ends[i], ends[i + 1], fe[i], fe[i + 1], e))
            .collect();
        let mut used = n0;
        let error = |ps: &[Piece]| {
            let sum: f64 = ps.iter().map(|p| p.est).sum();
            (sum - delta).abs() / delta.abs().max(floor)
        };
        let mut err = error(&pieces);
        while err > s.ig_tolerance && used + 2 <= s.ig_max_steps {
            // Halve the worst pieces (at most 16 per round).
            let mut order: Vec<usize> = (0..pieces.len()).collect();
            let local = |p: &Piece| ((p.fb - p.fa) - p.est).abs();
            order.sort_by(|&i, &j| local(&pieces[j]).total_cmp(&local(&pieces[i])));
            let k = order.len().min(16).min((s.ig_max_steps - used) / 2).max(1);
            let chosen: Vec<usize> = order[..k].to_vec();
            let mut alphas = Vec::with_capacity(2 * k);
            for &i in &chosen {
                let p = &pieces[i];
                let mid = (p.a + p.b) / 2.0;
                alphas.push((p.a + mid) / 2.0);
                alphas.push((mid + p.b) / 2.0);
            }
            let mut got = eval(&alphas)?.into_iter();
            let mut next = Vec::with_capacity(pieces.len() + k);
            let mut split = vec![false; pieces.len()];
            for &i in &chosen {
                split[i] = true;
            }
            let mut halves = Vec::with_capacity(2 * k);
            for &i in &chosen {
                let p = &pieces[i];
                let mid = (p.a + p.b) / 2.0;
                let (l, r) = (got.next().expect("two"), got.next().expect("two"));
                halves.push(piece(p.a, mid, p.fa, p.fm, l));
                halves.push(piece(mid, p.b, p.fm, p.fb, r));
            }
            for (i, p) in pieces.into_iter().enumerate() {
                if !split[i] {
                    next.push(p);
                }
            }
            next.extend(halves);
            pieces = next;
            used += 2 * k;
            err = error(&pieces);
        }
        let mut attr = vec![0f64; m];
        for p in &pieces {
            let w = p.b - p.a;
            for ch in 0..c {
                for (j, a) in attr.iter_mut().enumerate() {
                    let k = ch * m + j;
                    *a += diff[k] * p.grad[k] as f64 * w;
                }
            }
        }
        Ok((attr, err, used, delta))
    }

    /// The top-level layer Grad-CAM looks at: the last one that holds a
    /// convolution and gives channels × positions.
    fn cam_layer(&self) -> Result<usize> {
        let layers = self.net.root().layers();
        let specs = &self.fitted.spec.layers;
        (0..layers.len().saturating_sub(1))
            .rev()
            .find(|&i| has_conv(&specs[i]) && layers[i].output_shape().len() == 2)
            .ok_or_else(|| {
                ExplainError::Invalid(format!(
                    "model '{}' has no convolutional layer before its output, so Grad-CAM is not defined for it",
                    self.fitted.spec.name
                ))
            })
    }

    fn gradcam(
        &self,
        rows: &[usize],
        batch: usize,
        dec: &mut BatchDecoder,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<(Vec<f64>, GradCamLayer)> {
        let k = self.cam_layer()?;
        let layer = &self.net.root().layers()[k];
        let (kc, len) = (layer.output_shape()[0], layer.output_shape()[1]);
        let total_layers = self.net.root().layers().len();
        let m = self.m;
        let field =
            field_of(&self.fitted.spec.layers[..=k], Field::identity(m)).filter(|f| f.len == len);
        let covers: Vec<std::ops::Range<usize>> = (0..len)
            .map(|l| match field {
                Some(f) => f.covers(l, m),
                None => (l * m / len)..((l + 1) * m / len).max(l * m / len + 1).min(m),
            })
            .collect();
        let mut count = vec![0u32; m];
        for r in &covers {
            for c in &mut count[r.clone()] {
                *c += 1;
            }
        }
        let be = &self.net.backend;
        let mut total = vec![0f64; m];
        for (bi, chunk) in rows.chunks(batch).enumerate() {
            progress("grad-cam", bi * batch, rows.len());
            let (x, _) = dec.decode(chunk);
            let nb = chunk.len();
            let class = self.targets(&x, nb)?;
            let xt = be.tensor(x, &[nb, self.channels, m])?;
            let a = self.net.forward_layers(&xt, 0..k + 1, &Ctx::eval())?.output;
            let mut tail =
                self.net
                    .forward_layers(&a, k + 1..total_layers, &Ctx::eval().recording())?;
            let da = self
                .net
                .backward_layers(&mut tail, self.dy(&class)?, k + 1..total_layers)?;
            let (av, dv) = (be.to_vec(&a)?, be.to_vec(&da)?);
            for r in 0..nb {
                let cam = cam_1d(
                    &av[r * kc * len..(r + 1) * kc * len],
                    &dv[r * kc * len..(r + 1) * kc * len],
                    kc,
                    len,
                );
                for (l, range) in covers.iter().enumerate() {
                    for j in range.clone() {
                        total[j] += cam[l] / count[j] as f64;
                    }
                }
            }
        }
        let n = rows.len() as f64;
        Ok((
            total.iter().map(|v| v / n).collect(),
            GradCamLayer {
                path: layer.path().to_string(),
                kind: layer.kind(),
                channels: kc,
                positions: len,
                mapping: if field.is_some() {
                    "receptive_field"
                } else {
                    "interpolated"
                },
            },
        ))
    }
}

/// Grad-CAM of one sample: ReLU(Σ_k α_k A_k) with α_k the mean gradient
/// of channel k, from activations and gradients laid out channels × positions.
pub fn cam_1d(a: &[f32], da: &[f32], channels: usize, len: usize) -> Vec<f64> {
    let alpha: Vec<f64> = (0..channels)
        .map(|k| {
            da[k * len..(k + 1) * len]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / len as f64
        })
        .collect();
    (0..len)
        .map(|l| {
            let v: f64 = (0..channels)
                .map(|k| alpha[k] * a[k * len + l] as f64)
                .sum();
            v.max(0.0)
        })
        .collect()
}

fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<B: Backend> Predictor for NetworkExplainer<'_, B> {
    fn channels(&self) -> usize {
        self.channels
    }
    fn n_markers(&self) -> usize {
        self.m
    }
    fn decode(&self, rows: &[usize]) -> Vec<f32> {
        self.decoder().decode(rows).0
    }
    fn predict(&self, x: &[f32], n: usize) -> Result<Vec<f64>> {
        let cm = self.channels * self.m;
        let mut out = Vec::with_capacity(n * self.width);
        for chunk in x.chunks(256 * cm) {
            out.extend(self.outputs(chunk.to_vec(), chunk.len() / cm)?);
        }
        Ok(outputs_to_predictions(
            self.fitted.spec.training.loss,
            &out,
            self.width,
            &self.fitted.scales(),
        ))
    }
}

/// A linear model (SNP-BLUP) read through a marker map.
pub struct LinearExplainer<'a> {
    pub model: &'a LinearModel,
    pub g: &'a PackedGenotypes,
    pub map: &'a InputMap,
}

impl LinearExplainer<'_> {
    /// The SNP-BLUP effects, and the gradient methods, which for a linear
    /// model are exact: the gradient is the effect, and Integrated Gradients
    /// from the training mean is gradient × (dosage − mean).
    pub fn explain(
        &self,
        rows: &[usize],
        methods: &[Method],
        s: &Settings,
        observed: Option<&[f64]>,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> Result<Explanation> {
        let t = Instant::now();
        let m = self.model.effects.len();
        let abs_b: Vec<f64> = self.model.effects.iter().map(|b| b.abs()).collect();
        let mut ex = Explanation::default();
        ex.attributions.push(Attribution {
            method: Method::SnpBlup,
            values: abs_b.clone(),
            seconds: t.elapsed().as_secs_f64(),
        });
        for k in [Method::Saliency, Method::SmoothGrad] {
            if methods.contains(&k) {
                ex.attributions.push(Attribution {
                    method: k,
                    values: abs_b.clone(),
                    seconds: 0.0,
                });
            }
        }
        if methods.contains(&Method::GradInput) || methods.contains(&Method::IntegratedGradients) {
            let t = Instant::now();
            let mut sum = vec![0f64; m];
            for chunk in rows.chunks(256) {
                let x = self.decode(chunk);
                for r in x.chunks(m) {
                    for j in 0..m {
                        sum[j] += (r[j] as f64 * self.model.effects[j]).abs();
                    }
                }
            }
            let n = rows.len().max(1) as f64;
            let v: Vec<f64> = sum.iter().map(|a| a / n).collect();
            let secs = t.elapsed().as_secs_f64();
            for k in [Method::GradInput, Method::IntegratedGradients] {
                if methods.contains(&k) {
                    ex.attributions.push(Attribution {
                        method: k,
                        values: v.clone(),
                        seconds: secs,
                    });
                }
            }
            if methods.contains(&Method::IntegratedGradients) {
                ex.ig = Some(IgCheck {
                    worst: 0.0,
                    floor: 0.0,
                    near_baseline: 0,
                    median: 0.0,
                    max_steps: 1,
                    refined: 0,
                    baseline: "training mean (exact for a linear model)",
                });
            }
        }
        if methods.contains(&Method::GradCam) {
            ex.notes
                .push("gradcam: a linear model has no convolutional layer".into());
        }
        if methods.contains(&Method::Permutation) {
            ex.add_permutation(self, rows, observed, s, progress)?;
        }
        Ok(ex)
    }
}

impl Predictor for LinearExplainer<'_> {
    fn channels(&self) -> usize {
        1
    }
    fn n_markers(&self) -> usize {
        self.model.effects.len()
    }
    /// Dosages minus the training mean; missing calls take the mean.
    fn decode(&self, rows: &[usize]) -> Vec<f32> {
        let m = self.n_markers();
        let mut out = vec![0f32; rows.len() * m];
        for (k, &c) in self.model.center.iter().enumerate() {
            let j = self.map.cols.as_ref().map_or(k, |cols| cols[k]);
            let d = if self.map.flipped[k] {
                [0.0, c, 1.0, 2.0]
            } else {
                [2.0, c, 1.0, 0.0]
            };
            for (r, &i) in rows.iter().enumerate() {
                out[r * m + k] = (d[self.g.code(i, j) as usize] - c) as f32;
            }
        }
        out
    }
    fn predict(&self, x: &[f32], n: usize) -> Result<Vec<f64>> {
        let m = self.n_markers();
        Ok((0..n)
            .map(|r| {
                self.model.intercept
                    + x[r * m..(r + 1) * m]
                        .iter()
                        .zip(&self.model.effects)
                        .map(|(&v, &b)| v as f64 * b)
                        .sum::<f64>()
            })
            .collect())
    }
}

/// Pearson r over the pairs where both values are finite.
fn r_finite(a: &[f64], b: &[f64]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = a
        .iter()
        .zip(b)
        .filter(|(u, v)| u.is_finite() && v.is_finite())
        .map(|(&u, &v)| (u, v))
        .unzip();
    eval::metrics::pearson(&x, &y)
}

/// Permutation importance: each window of `perm_window` markers is
/// shuffled across the individuals (one shuffle for the whole window, so
/// LD inside it is kept), and the loss in r is the window's importance.
/// r is with the observations when given (at least 3), else with the
/// unshuffled predictions. Returns the values per marker, and the
/// unshuffled r with what it is against.
pub fn permutation(
    p: &dyn Predictor,
    rows: &[usize],
    observed: Option<&[f64]>,
    s: &Settings,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<(Vec<f64>, (f64, &'static str))> {
    let (c, m) = (p.channels(), p.n_markers());
    let cm = c * m;
    let n = rows.len();
    if n < 3 {
        return Err(ExplainError::Invalid(format!(
            "permutation importance needs at least 3 individuals, got {n}"
        )));
    }
    let w = s.perm_window.max(1);
    let mut x = p.decode(rows);
    let base = p.predict(&x, n)?;
    let obs: Option<Vec<f64>> = observed.map(|y| rows.iter().map(|&i| y[i]).collect());
    let obs = obs.filter(|o| o.iter().filter(|v| v.is_finite()).count() >= 3);
    let (reference, what) = match &obs {
        Some(o) => (o.clone(), "observed"),
        None => (base.clone(), "unshuffled predictions"),
    };
    let r0 = r_finite(&base, &reference);
    let windows = m.div_ceil(w);
    let mut values = vec![0f64; m];
    let mut saved = vec![0f32; n * c * w];
    for win in 0..windows {
        progress("permutation", win, windows);
        let (a, b) = (win * w, ((win + 1) * w).min(m));
        let width = b - a;
        // Keep the window's values, to restore them after.
        for r in 0..n {
            for ch in 0..c {
                let src = r * cm + ch * m + a;
                saved[(r * c + ch) * w..(r * c + ch) * w + width]
                    .copy_from_slice(&x[src..src + width]);
            }
        }
        let mut loss = 0.0;
        for rep in 0..s.perm_repeats.max(1) {
            let mut order: Vec<usize> = (0..n).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(mix(s.seed, (win * 1_000_003 + rep) as u64));
            order.shuffle(&mut rng);
            for (r, &from) in order.iter().enumerate() {
                for ch in 0..c {
                    let dst = r * cm + ch * m + a;
                    x[dst..dst + width]
                        .copy_from_slice(&saved[(from * c + ch) * w..(from * c + ch) * w + width]);
                }
            }
            let pred = p.predict(&x, n)?;
            loss += r0 - r_finite(&pred, &reference);
        }
        let v = loss / s.perm_repeats.max(1) as f64;
        values[a..b].iter_mut().for_each(|x| *x = v);
        for r in 0..n {
            for ch in 0..c {
                let dst = r * cm + ch * m + a;
                x[dst..dst + width]
                    .copy_from_slice(&saved[(r * c + ch) * w..(r * c + ch) * w + width]);
            }
        }
    }
    Ok((values, (r0, what)))
}
