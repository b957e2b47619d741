//! What an image convnet sees (Chollet, *Deep Learning with Python*, 5.4):
//! the intermediate activations, the input pattern each filter responds to
//! most (gradient ascent from noise), Grad-CAM heatmaps of a class, and
//! the deletion check of a heatmap's faithfulness.

use model::image::gather;
use model::ImageModel;
use nn::{Backend, Ctx, Network};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vision::ImageSet;

use crate::error::{ExplainError, Result};
use crate::geometry::has_conv;

/// One layer's feature maps for the chosen images.
pub struct ActivationMaps {
    /// The top-level layer's index and kind, e.g. `0-conv2d`.
    pub label: String,
    pub channels: usize,
    pub h: usize,
    pub w: usize,
    /// Per image, per channel: h × w values.
    pub maps: Vec<Vec<Vec<f32>>>,
}

/// The patterns that maximise each filter's mean activation.
pub struct FilterPatterns {
    pub label: String,
    /// Per filter: channels × h × w, in input units.
    pub patterns: Vec<Vec<f32>>,
    /// Mean activation of each filter at the start and at the end.
    pub start: Vec<f64>,
    pub end: Vec<f64>,
    /// Filters silent on grey noise, started again from uniform noise.
    pub restarted: usize,
}

/// The settings of gradient ascent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ascent {
    pub steps: usize,
    /// Per step, times the gradient divided by its root mean square.
    pub step_size: f32,
    pub seed: u64,
}

impl Default for Ascent {
    fn default() -> Self {
        Ascent {
            steps: 40,
            step_size: 0.01,
            seed: 1,
        }
    }
}

/// Explains an image classifier; runs an unfused copy of its network.
pub struct ImageExplainer<'a, B: Backend> {
    pub model: &'a ImageModel<B>,
    net: Network<B>,
}

fn is_map_layer(kind: &str) -> bool {
    matches!(
        kind,
        "conv2d" | "separable_conv2d" | "max_pool2d" | "avg_pool2d" | "residual" | "branches"
    )
}

impl<'a, B: Backend> ImageExplainer<'a, B> {
    pub fn new(model: &'a ImageModel<B>) -> Result<Self> {
        let net = crate::unfused_copy(&model.network, &model.spec)?;
        Ok(ImageExplainer { model, net })
    }

    fn shape(&self) -> [usize; 3] {
        let m = &self.model.meta;
        [m.channels, m.height, m.width]
    }

    fn tensor(&self, x: Vec<f32>, n: usize) -> Result<B::Tensor> {
        let [c, h, w] = self.shape();
        Ok(self.net.backend.tensor(x, &[n, c, h, w])?)
    }

    /// The pixels of images `idx` of `set`, scaled to [0, 1].
    pub fn pixels(&self, set: &ImageSet, idx: &[usize]) -> Result<Vec<f32>> {
        if let Some(&i) = idx.iter().find(|&&i| i >= set.len()) {
            return Err(ExplainError::Invalid(format!(
                "image {i} asked for, but the set has {} images (0 to {})",
                set.len(),
                set.len().saturating_sub(1)
            )));
        }
        let [c, h, w] = self.shape();
        if (set.channels, set.height, set.width) != (c, h, w) {
            return Err(ExplainError::Invalid(format!(
                "the model takes {c} × {h} × {w} images, the data set has {} × {} × {}",
                set.channels, set.height, set.width
            )));
        }
        Ok(gather(set, idx))
    }

    /// Class probabilities (softmax of the outputs) of `n` images.
    pub fn probabilities(&self, x: Vec<f32>, n: usize) -> Result<Vec<f64>> {
        let be = &self.net.backend;
        let out = be.to_vec(&self.net.predict(&self.tensor(x, n)?)?)?;
        let k = self.model.meta.classes;
        Ok(out
            .chunks(k)
            .flat_map(|r| {
                let mx = r.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v)) as f64;
                let e: Vec<f64> = r.iter().map(|&v| (v as f64 - mx).exp()).collect();
                let s: f64 = e.iter().sum();
                e.into_iter().map(move |v| v / s)
            })
            .collect())
    }

    /// The most probable class of each image, from [`Self::probabilities`].
    pub fn predicted(&self, probs: &[f64]) -> Vec<usize> {
        let k = self.model.meta.classes;
        probs
            .chunks(k)
            .map(|r| (0..k).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect()
    }

    /// The feature maps of every top-level convolutional or pooling layer.
    pub fn activations(&self, x: Vec<f32>, n: usize) -> Result<Vec<ActivationMaps>> {
        let outs = self.net.forward_all(&self.tensor(x, n)?, &Ctx::eval())?;
        let be = &self.net.backend;
        let mut res = Vec::new();
        for (i, layer) in self.net.root().layers().iter().enumerate() {
            let shape = layer.output_shape();
            if !is_map_layer(layer.kind()) || shape.len() != 3 {
                continue;
            }
            let Some((_, t)) = outs.iter().find(|(p, _)| p == layer.path()) else {
                continue;
            };
            let v = be.to_vec(t)?;
            let (c, h, w) = (shape[0], shape[1], shape[2]);
            let maps = (0..n)
                .map(|r| {
                    (0..c)
                        .map(|k| v[(r * c + k) * h * w..(r * c + k + 1) * h * w].to_vec())
                        .collect()
                })
                .collect();
            res.push(ActivationMaps {
                label: format!("{i}-{}", layer.kind()),
                channels: c,
                h,
                w,
                maps,
            });
        }
        Ok(res)
    }

    /// Gradient ascent on the input, from grey noise, of each filter's mean
    /// activation, for every top-level convolutional layer (filters silent on
    /// grey noise start again from uniform noise).
    pub fn filters(&self, a: &Ascent) -> Result<Vec<FilterPatterns>> {
        let [c, h, w] = self.shape();
        let mut res = Vec::new();
        for (i, layer) in self.net.root().layers().iter().enumerate() {
            let shape = layer.output_shape().to_vec();
            if !matches!(layer.kind(), "conv2d" | "separable_conv2d") || shape.len() != 3 {
                continue;
            }
            let k = shape[0];
            let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ i as u64);
            let img = c * h * w;
            // One image per filter, all ascending at once, from grey noise.
            let grey: Vec<f32> = (0..k * img)
                .map(|_| 0.5 + rng.gen_range(-0.1f32..0.1))
                .collect();
            let (mut x, mut start, mut end) = self.ascend(i, &shape, grey, a)?;
            // A ReLU filter silent on grey noise has no gradient there: those
            // start again from uniform noise over the whole range.
            let silent: Vec<usize> = (0..k).filter(|&f| end[f] <= 0.0).collect();
            if !silent.is_empty() {
                let noise: Vec<f32> = (0..k * img).map(|_| rng.gen_range(0f32..1.0)).collect();
                let (x2, s2, e2) = self.ascend(i, &shape, noise, a)?;
                for &f in &silent {
                    x[f * img..(f + 1) * img].copy_from_slice(&x2[f * img..(f + 1) * img]);
                    start[f] = s2[f];
                    end[f] = e2[f];
                }
            }
            res.push(FilterPatterns {
                label: format!("{i}-{}", layer.kind()),
                patterns: (0..k).map(|f| x[f * img..(f + 1) * img].to_vec()).collect(),
                start,
                end,
                restarted: silent.len(),
            });
        }
        Ok(res)
    }

    /// Gradient ascent of every filter of top-level layer `i` (output
    /// `shape`) at once, from `x` (one image per filter): the images, and
    /// each filter's mean activation at the start and at the end.
    fn ascend(
        &self,
        i: usize,
        shape: &[usize],
        mut x: Vec<f32>,
        a: &Ascent,
    ) -> Result<(Vec<f32>, Vec<f64>, Vec<f64>)> {
        let [c, h, w] = self.shape();
        let be = &self.net.backend;
        let (k, plane) = (shape[0], shape[1] * shape[2]);
        let img = c * h * w;
        let mut dy = vec![0f32; k * k * plane];
        for f in 0..k {
            dy[(f * k + f) * plane..(f * k + f + 1) * plane].fill(1.0 / plane as f32);
        }
        let mean_of = |out: &[f32]| -> Vec<f64> {
            (0..k)
                .map(|f| {
                    out[(f * k + f) * plane..(f * k + f + 1) * plane]
                        .iter()
                        .map(|&v| v as f64)
                        .sum::<f64>()
                        / plane as f64
                })
                .collect()
        };
        let mut start = Vec::new();
        for step in 0..=a.steps {
            let xt = self.tensor(x.clone(), k)?;
            let mut pass = self
                .net
                .forward_layers(&xt, 0..i + 1, &Ctx::eval().recording())?;
            let means = mean_of(&be.to_vec(&pass.output)?);
            if step == 0 {
                start = means.clone();
            }
            if step == a.steps {
                return Ok((x, start, means));
            }
            let dyt = be.tensor(dy.clone(), &[k, shape[0], shape[1], shape[2]])?;
            let g = be.to_vec(&self.net.backward_layers(&mut pass, dyt, 0..i + 1)?)?;
            for f in 0..k {
                let gs = &g[f * img..(f + 1) * img];
                let rms = (gs.iter().map(|&v| (v * v) as f64).sum::<f64>() / img as f64).sqrt()
                    as f32
                    + 1e-5;
                for (xv, &gv) in x[f * img..(f + 1) * img].iter_mut().zip(gs) {
                    *xv += a.step_size * gv / rms;
                }
            }
        }
        unreachable!("the loop returns at its last step")
    }

    /// The top-level layer Grad-CAM looks at: the last one holding a
    /// convolution that gives channels × rows × columns.
    pub fn cam_layer(&self) -> Result<usize> {
        let layers = self.net.root().layers();
        (0..layers.len().saturating_sub(1))
            .rev()
            .find(|&i| has_conv(&self.model.spec.layers[i]) && layers[i].output_shape().len() == 3)
            .ok_or_else(|| {
                ExplainError::Invalid(format!(
                    "model '{}' has no convolutional layer before its output",
                    self.model.spec.name
                ))
            })
    }

    /// The path of the Grad-CAM layer.
    pub fn cam_layer_name(&self) -> Result<String> {
        let k = self.cam_layer()?;
        let l = &self.net.root().layers()[k];
        Ok(format!("{} ({})", l.path(), l.kind()))
    }

    /// Grad-CAM of one image for `class`, upsampled bilinearly to the
    /// image's size and scaled to [0, 1] (all zeros when nothing is positive).
    pub fn gradcam(&self, x: &[f32], class: usize) -> Result<Vec<f64>> {
        let k = self.cam_layer()?;
        let n_layers = self.net.root().layers().len();
        let be = &self.net.backend;
        let a = self
            .net
            .forward_layers(&self.tensor(x.to_vec(), 1)?, 0..k + 1, &Ctx::eval())?
            .output;
        let mut tail = self
            .net
            .forward_layers(&a, k + 1..n_layers, &Ctx::eval().recording())?;
        let classes = self.model.meta.classes;
        let mut dy = vec![0f32; classes];
        dy[class] = 1.0;
        let dyt = be.tensor(dy, &[1, classes])?;
        let da = be.to_vec(&self.net.backward_layers(&mut tail, dyt, k + 1..n_layers)?)?;
        let av = be.to_vec(&a)?;
        let s = self.net.root().layers()[k].output_shape();
        let (kc, hh, ww) = (s[0], s[1], s[2]);
        let cam = crate::genomic::cam_1d(&av, &da, kc, hh * ww);
        let [_, h, w] = self.shape();
        let up = bilinear(&cam, hh, ww, h, w);
        let mx = up.iter().fold(0f64, |a, &v| a.max(v));
        Ok(if mx > 0.0 {
            up.iter().map(|v| v / mx).collect()
        } else {
            up
        })
    }

    /// The deletion curve: pixels set to 0 in `order`, `steps` steps, and
    /// the probability of `class` after each (the first with none deleted).
    /// Returns the area under the curve over the fraction deleted.
    pub fn deletion(&self, x: &[f32], order: &[usize], class: usize, steps: usize) -> Result<f64> {
        let [c, h, w] = self.shape();
        let plane = h * w;
        let steps = steps.clamp(1, plane);
        let mut batch = Vec::with_capacity((steps + 1) * c * plane);
        let mut cur = x.to_vec();
        let mut fractions = Vec::with_capacity(steps + 1);
        for s in 0..=steps {
            let upto = (s * plane).div_ceil(steps);
            if s > 0 {
                let from = ((s - 1) * plane).div_ceil(steps);
                for &p in &order[from..upto] {
                    for ch in 0..c {
                        cur[ch * plane + p] = 0.0;
                    }
                }
            }
            fractions.push(upto as f64 / plane as f64);
            batch.extend_from_slice(&cur);
        }
        let probs = self.probabilities(batch, steps + 1)?;
        let k = self.model.meta.classes;
        let p: Vec<f64> = (0..=steps).map(|s| probs[s * k + class]).collect();
        Ok((1..=steps)
            .map(|s| (p[s] + p[s - 1]) / 2.0 * (fractions[s] - fractions[s - 1]))
            .sum())
    }

    /// The deletion areas of one image for its predicted class: in the
    /// order of the Grad-CAM heatmap, and in a random order.
    pub fn deletion_pair(&self, x: &[f32], steps: usize, seed: u64) -> Result<(f64, f64, usize)> {
        let probs = self.probabilities(x.to_vec(), 1)?;
        let class = self.predicted(&probs)[0];
        let heat = self.gradcam(x, class)?;
        let mut by_heat: Vec<usize> = (0..heat.len()).collect();
        by_heat.sort_by(|&a, &b| heat[b].total_cmp(&heat[a]).then(a.cmp(&b)));
        let mut random: Vec<usize> = (0..heat.len()).collect();
        random.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        Ok((
            self.deletion(x, &by_heat, class, steps)?,
            self.deletion(x, &random, class, steps)?,
            class,
        ))
    }
}

/// Bilinear upsampling of an `h × w` map to `oh × ow`, pixel centres aligned.
pub fn bilinear(v: &[f64], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f64> {
    let mut out = vec![0f64; oh * ow];
    let coord = |o: usize, n_out: usize, n_in: usize| -> (usize, usize, f64) {
        let s = ((o as f64 + 0.5) * n_in as f64 / n_out as f64 - 0.5).clamp(0.0, (n_in - 1) as f64);
        let i0 = s.floor() as usize;
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, s - i0 as f64)
    };
    for y in 0..oh {
        let (y0, y1, fy) = coord(y, oh, h);
        for x in 0..ow {
            let (x0, x1, fx) = coord(x, ow, w);
            let top = v[y0 * w + x0] * (1.0 - fx) + v[y0 * w + x1] * fx;
            let bot = v[y1 * w + x0] * (1.0 - fx) + v[y1 * w + x1] * fx;
            out[y * ow + x] = top * (1.0 - fy) + bot * fy;
        }
    }
    out
}

/// The jet colour map at t in [0, 1], as 0–255 RGB.
pub fn jet(t: f64) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    let f = |x: f64| (1.5 - (4.0 * t - x).abs()).clamp(0.0, 1.0) as f32 * 255.0;
    [f(3.0), f(2.0), f(1.0)]
}

/// Min–max scaling of a map to 0–255 (a flat map is mid-grey).
pub fn to_grey(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |a, &x| {
        (a.0.min(x), a.1.max(x))
    });
    if hi - lo <= 1e-12 {
        return vec![128.0; v.len()];
    }
    v.iter().map(|&x| 255.0 * (x - lo) / (hi - lo)).collect()
}

/// Chollet's display of a filter pattern: centred, scaled to sd 0.1, around
/// mid-grey, clipped; values 0–255.
pub fn deprocess(v: &[f32]) -> Vec<f32> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
    let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    v.iter()
        .map(|&x| ((((x as f64 - mean) / (sd + 1e-5)) * 0.1 + 0.5).clamp(0.0, 1.0) * 255.0) as f32)
        .collect()
}

/// An image (channels × h × w in [0, 1]) with a heatmap (h × w in [0, 1])
/// laid over it: RGB planes, 0–255.
pub fn overlay(x: &[f32], channels: usize, heat: &[f64]) -> Vec<f32> {
    let plane = heat.len();
    let mut out = vec![0f32; 3 * plane];
    for p in 0..plane {
        let grey = if channels >= 3 {
            (x[p] + x[plane + p] + x[2 * plane + p]) / 3.0
        } else {
            x[p]
        } * 255.0;
        let c = jet(heat[p]);
        for ch in 0..3 {
            out[ch * plane + p] = 0.55 * grey + 0.45 * c[ch];
        }
    }
    out
}
