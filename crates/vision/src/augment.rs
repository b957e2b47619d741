//! On-the-fly image augmentation with the semantics of Keras's
//! `ImageDataGenerator`: a random rotation, shift, shear and zoom combined
//! into one affine map about the image centre, sampled with bilinear
//! interpolation (scipy's `order=1`), then an optional horizontal or
//! vertical flip.
//!
//! The map is built as Keras builds it (`rotation · shift · shear · zoom`
//! in its x/y convention, centred with `transform_matrix_offset_center`,
//! then with rows and columns swapped), so a spec tuned in Keras means the
//! same here. Each image draws its own transform from a seed, its epoch and
//! its index, so results do not depend on the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How pixels outside the image are filled (scipy's `mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillMode {
    /// The nearest edge pixel (aaaa|abcd|dddd); Keras's default.
    #[default]
    Nearest,
    /// `cval` outside the image (kkkk|abcd|kkkk).
    Constant,
    /// Mirrored about the edge (dcba|abcd|dcba).
    Reflect,
    /// Periodic as scipy's `wrap`: the coordinate wraps with period n − 1,
    /// so the first and last pixels overlap (abcd|bcd|bcd).
    Wrap,
}

/// A zoom range: one number z for [1 − z, 1 + z], or [low, high].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ZoomRange {
    Symmetric(f32),
    Range([f32; 2]),
}

impl Default for ZoomRange {
    fn default() -> Self {
        ZoomRange::Symmetric(0.0)
    }
}

impl ZoomRange {
    pub fn bounds(self) -> (f32, f32) {
        match self {
            ZoomRange::Symmetric(z) => (1.0 - z, 1.0 + z),
            ZoomRange::Range([a, b]) => (a, b),
        }
    }
}

/// An augmentation spec, read from TOML. The keys follow Keras's
/// `ImageDataGenerator` arguments.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Rotation by a uniform angle in [−r, r] degrees.
    #[serde(default)]
    pub rotation_range: f32,
    /// Shift of columns: a fraction of the width if < 1, else pixels.
    #[serde(default, alias = "width_shift")]
    pub width_shift_range: f32,
    /// Shift of rows: a fraction of the height if < 1, else pixels.
    #[serde(default, alias = "height_shift")]
    pub height_shift_range: f32,
    /// Shear by a uniform angle in [−s, s] degrees.
    #[serde(default)]
    pub shear_range: f32,
    /// Independent zoom factors for rows and columns, uniform in the range.
    #[serde(default)]
    pub zoom_range: ZoomRange,
    #[serde(default)]
    pub horizontal_flip: bool,
    #[serde(default)]
    pub vertical_flip: bool,
    #[serde(default)]
    pub fill_mode: FillMode,
    /// The fill value for `fill_mode = "constant"`, in pixel units (0–255).
    #[serde(default)]
    pub cval: f32,
}

impl AugmentSpec {
    /// Parses and checks a spec; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, String> {
        let s: AugmentSpec = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
        s.validate().map_err(|e| format!("{origin}: {e}"))?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        let nonneg = |name: &str, v: f32| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name} = {v}: expected a number ≥ 0"))
            }
        };
        nonneg("rotation_range", self.rotation_range)?;
        nonneg("width_shift_range", self.width_shift_range)?;
        nonneg("height_shift_range", self.height_shift_range)?;
        nonneg("shear_range", self.shear_range)?;
        let (lo, hi) = self.zoom_range.bounds();
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(format!(
                "zoom_range gives [{lo}, {hi}]: expected 0 < low ≤ high (a number z < 1 means [1 − z, 1 + z])"
            ));
        }
        if !self.cval.is_finite() {
            return Err(format!("cval = {}: expected a number", self.cval));
        }
        Ok(())
    }

    /// Whether the spec changes anything.
    pub fn is_identity(&self) -> bool {
        let (lo, hi) = self.zoom_range.bounds();
        self.rotation_range == 0.0
            && self.width_shift_range == 0.0
            && self.height_shift_range == 0.0
            && self.shear_range == 0.0
            && lo == 1.0
            && hi == 1.0
            && !self.horizontal_flip
            && !self.vertical_flip
    }

    /// The random parameters of one image, drawn in Keras's order.
    pub fn draw(&self, rng: &mut impl Rng, h: usize, w: usize) -> Transform {
        let uni = |rng: &mut dyn rand::RngCore, r: f32| -> f32 {
            if r > 0.0 {
                rng.gen_range(-r..=r)
            } else {
                0.0
            }
        };
        let theta = uni(rng, self.rotation_range);
        let mut tx = uni(rng, self.height_shift_range);
        if self.height_shift_range < 1.0 {
            tx *= h as f32;
        }
        let mut ty = uni(rng, self.width_shift_range);
        if self.width_shift_range < 1.0 {
            ty *= w as f32;
        }
        let shear = uni(rng, self.shear_range);
        let (lo, hi) = self.zoom_range.bounds();
        let (zx, zy) = if lo == 1.0 && hi == 1.0 {
            (1.0, 1.0)
        } else {
            (rng.gen_range(lo..=hi), rng.gen_range(lo..=hi))
        };
        let flip_h = self.horizontal_flip && rng.gen::<f32>() < 0.5;
        let flip_v = self.vertical_flip && rng.gen::<f32>() < 0.5;
        Transform {
            theta,
            tx,
            ty,
            shear,
            zx,
            zy,
            flip_h,
            flip_v,
        }
    }
}

/// One image's transform: Keras's `get_random_transform` parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    /// Degrees.
    pub theta: f32,
    pub tx: f32,
    pub ty: f32,
    /// Degrees.
    pub shear: f32,
    pub zx: f32,
    pub zy: f32,
    pub flip_h: bool,
    pub flip_v: bool,
}

type M3 = [[f64; 3]; 3];

fn mul(a: &M3, b: &M3) -> M3 {
    let mut c = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            c[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

impl Transform {
    /// The map from output (row, column) to input (row, column):
    /// (A, offset) with input = A · output + offset.
    pub fn matrix(&self, h: usize, w: usize) -> ([[f64; 2]; 2], [f64; 2]) {
        let id: M3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let mut m = id;
        if self.theta != 0.0 {
            let t = (self.theta as f64).to_radians();
            m = mul(
                &m,
                &[
                    [t.cos(), -t.sin(), 0.0],
                    [t.sin(), t.cos(), 0.0],
                    [0.0, 0.0, 1.0],
                ],
            );
        }
        if self.tx != 0.0 || self.ty != 0.0 {
            m = mul(
                &m,
                &[
                    [1.0, 0.0, self.tx as f64],
                    [0.0, 1.0, self.ty as f64],
                    [0.0, 0.0, 1.0],
                ],
            );
        }
        if self.shear != 0.0 {
            let s = (self.shear as f64).to_radians();
            m = mul(
                &m,
                &[[1.0, -s.sin(), 0.0], [0.0, s.cos(), 0.0], [0.0, 0.0, 1.0]],
            );
        }
        if self.zx != 1.0 || self.zy != 1.0 {
            m = mul(
                &m,
                &[
                    [self.zx as f64, 0.0, 0.0],
                    [0.0, self.zy as f64, 0.0],
                    [0.0, 0.0, 1.0],
                ],
            );
        }
        // transform_matrix_offset_center(m, h, w).
        let (ox, oy) = (h as f64 / 2.0 - 0.5, w as f64 / 2.0 - 0.5);
        let off = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
        let m = mul(&mul(&off, &m), &reset);
        // Keras swaps x and y (M' = P M P) so that the map works on (row, column).
        ([[m[1][1], m[1][0]], [m[0][1], m[0][0]]], [m[1][2], m[0][2]])
    }

    /// Applies the transform to one image (channels × h × w), writing `out`.
    /// `cval` fills outside pixels in constant mode.
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &self,
        img: &[f32],
        channels: usize,
        h: usize,
        w: usize,
        mode: FillMode,
        cval: f32,
        out: &mut [f32],
    ) {
        let (a, off) = self.matrix(h, w);
        let plane = h * w;
        for c in 0..channels {
            let src = &img[c * plane..(c + 1) * plane];
            let dst = &mut out[c * plane..(c + 1) * plane];
            for r in 0..h {
                for col in 0..w {
                    let (rr, cc) = (r as f64, col as f64);
                    let y = a[0][0] * rr + a[0][1] * cc + off[0];
                    let x = a[1][0] * rr + a[1][1] * cc + off[1];
                    dst[r * w + col] = sample(src, h, w, y, x, mode, cval);
                }
            }
            if self.flip_h {
                for row in dst.chunks_mut(w) {
                    row.reverse();
                }
            }
            if self.flip_v {
                for r in 0..h / 2 {
                    let (top, bottom) = dst.split_at_mut((h - 1 - r) * w);
                    top[r * w..(r + 1) * w].swap_with_slice(&mut bottom[..w]);
                }
            }
        }
    }
}

/// Maps an index outside 0..n into it, or None (constant mode).
fn fold(i: i64, n: usize, mode: FillMode) -> Option<usize> {
    let n = n as i64;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        FillMode::Constant => None,
        FillMode::Nearest => Some(i.clamp(0, n - 1) as usize),
        // Coordinates were wrapped already; a neighbour past the last pixel
        // is the first one again.
        FillMode::Wrap => Some(i.rem_euclid(n) as usize),
        FillMode::Reflect => {
            // Half-sample symmetric with period 2n.
            let p = i.rem_euclid(2 * n);
            Some(if p < n { p } else { 2 * n - 1 - p } as usize)
        }
    }
}

/// scipy's `wrap` for a coordinate: into [0, n − 1] with period n − 1.
fn wrap_coord(c: f64, n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let sz = (n - 1) as f64;
    if c < 0.0 {
        c + sz * ((-c / sz).trunc() + 1.0)
    } else if c > sz {
        c - sz * (c / sz).trunc()
    } else {
        c
    }
}

/// Bilinear sample at (y, x). In constant mode a point outside the image
/// (beyond its edge pixels' centres) takes `cval`.
fn sample(src: &[f32], h: usize, w: usize, y: f64, x: f64, mode: FillMode, cval: f32) -> f32 {
    if mode == FillMode::Constant {
        let tol = 1e-6;
        if y < -tol || y > (h - 1) as f64 + tol || x < -tol || x > (w - 1) as f64 + tol {
            return cval;
        }
    }
    // scipy wraps the coordinate itself, with period n − 1: the first and
    // last pixels overlap.
    let (y, x) = if mode == FillMode::Wrap {
        (wrap_coord(y, h), wrap_coord(x, w))
    } else {
        (y, x)
    };
    let (y0, x0) = (y.floor(), x.floor());
    let (fy, fx) = ((y - y0) as f32, (x - x0) as f32);
    let (y0, x0) = (y0 as i64, x0 as i64);
    let at = |yi: i64, xi: i64| -> f32 {
        // Constant mode only reaches here inside the image: clamp the
        // neighbour that lies on the far side of an edge pixel.
        let m = if mode == FillMode::Constant {
            FillMode::Nearest
        } else {
            mode
        };
        match (fold(yi, h, m), fold(xi, w, m)) {
            (Some(r), Some(c)) => src[r * w + c],
            _ => cval,
        }
    };
    let top = at(y0, x0) * (1.0 - fx) + at(y0, x0 + 1) * fx;
    let bottom = at(y0 + 1, x0) * (1.0 - fx) + at(y0 + 1, x0 + 1) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Applies a spec to a batch of images, one seeded transform per image.
#[derive(Clone, Debug)]
pub struct Augmenter {
    pub spec: AugmentSpec,
    pub seed: u64,
}

impl Augmenter {
    pub fn new(spec: AugmentSpec, seed: u64) -> Self {
        Augmenter { spec, seed }
    }

    /// The transform of image `index` in epoch `epoch`.
    pub fn transform(&self, epoch: usize, index: usize, h: usize, w: usize) -> Transform {
        let key = self.seed
            ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ (index as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        let mut rng = ChaCha8Rng::seed_from_u64(key);
        self.spec.draw(&mut rng, h, w)
    }

    /// Augments `batch` images in place (each channels × h × w, values in the
    /// same units as `cval_scaled`); `indices` are the images' indices in the
    /// data set.
    #[allow(clippy::too_many_arguments)]
    pub fn apply_batch(
        &self,
        batch: &mut [f32],
        indices: &[usize],
        epoch: usize,
        channels: usize,
        h: usize,
        w: usize,
        cval_scaled: f32,
    ) {
        use rayon::prelude::*;
        if self.spec.is_identity() {
            return;
        }
        let size = channels * h * w;
        batch
            .par_chunks_mut(size)
            .zip(indices.par_iter())
            .for_each_init(Vec::new, |src, (img, &idx)| {
                let t = self.transform(epoch, idx, h, w);
                src.clear();
                src.extend_from_slice(img);
                t.apply(src, channels, h, w, self.spec.fill_mode, cval_scaled, img);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Vec<f32> {
        (0..h * w).map(|i| i as f32).collect()
    }

    fn ident() -> Transform {
        Transform {
            theta: 0.0,
            tx: 0.0,
            ty: 0.0,
            shear: 0.0,
            zx: 1.0,
            zy: 1.0,
            flip_h: false,
            flip_v: false,
        }
    }

    #[test]
    fn identity_leaves_the_image() {
        let img = ramp(5, 7);
        let mut out = vec![0.0; 35];
        ident().apply(&img, 1, 5, 7, FillMode::Nearest, 0.0, &mut out);
        assert_eq!(out, img);
    }

    #[test]
    fn integer_shift_moves_pixels_as_keras_does() {
        // Keras: tx (from height_shift_range) acts on columns after its x/y
        // swap; output[r][c] = input[r + ty][c + tx].
        let (h, w) = (4, 6);
        let img = ramp(h, w);
        let t = Transform {
            tx: 2.0,
            ty: 1.0,
            ..ident()
        };
        let mut out = vec![0.0; h * w];
        t.apply(&img, 1, h, w, FillMode::Constant, -1.0, &mut out);
        for r in 0..h {
            for c in 0..w {
                let (sr, sc) = (r + 1, c + 2);
                let want = if sr < h && sc < w {
                    img[sr * w + sc]
                } else {
                    -1.0
                };
                assert_eq!(out[r * w + c], want, "({r}, {c})");
            }
        }
    }

    #[test]
    fn rotation_by_90_degrees_turns_a_square() {
        let n = 5;
        let img = ramp(n, n);
        let t = Transform {
            theta: 90.0,
            ..ident()
        };
        let mut out = vec![0.0; n * n];
        t.apply(&img, 1, n, n, FillMode::Nearest, 0.0, &mut out);
        // input = A·output about the centre with A = [[0, 1], [-1, 0]] after the swap
        // (rows and columns of Keras's x/y rotation): output[r][c] = input[c][n−1−r].
        for r in 0..n {
            for c in 0..n {
                let want = img[c * n + (n - 1 - r)];
                assert!((out[r * n + c] - want).abs() < 1e-4, "({r}, {c})");
            }
        }
    }

    #[test]
    fn fill_modes_follow_scipy() {
        assert_eq!(fold(-1, 4, FillMode::Nearest), Some(0));
        assert_eq!(fold(5, 4, FillMode::Nearest), Some(3));
        assert_eq!(fold(-1, 4, FillMode::Reflect), Some(0));
        assert_eq!(fold(-2, 4, FillMode::Reflect), Some(1));
        assert_eq!(fold(4, 4, FillMode::Reflect), Some(3));
        assert_eq!(fold(5, 4, FillMode::Reflect), Some(2));
        assert_eq!(fold(-1, 4, FillMode::Wrap), Some(3));
        assert_eq!(fold(4, 4, FillMode::Wrap), Some(0));
        assert_eq!(fold(-1, 4, FillMode::Constant), None);
    }

    #[test]
    fn half_pixel_shift_interpolates() {
        let img = vec![0.0, 10.0, 20.0, 30.0];
        let t = Transform { tx: 0.5, ..ident() };
        let mut out = vec![0.0; 4];
        t.apply(&img, 1, 1, 4, FillMode::Nearest, 0.0, &mut out);
        assert_eq!(out, vec![5.0, 15.0, 25.0, 30.0]);
    }

    #[test]
    fn flips() {
        let img = ramp(2, 3);
        let mut out = vec![0.0; 6];
        let t = Transform {
            flip_h: true,
            ..ident()
        };
        t.apply(&img, 1, 2, 3, FillMode::Nearest, 0.0, &mut out);
        assert_eq!(out, vec![2.0, 1.0, 0.0, 5.0, 4.0, 3.0]);
        let t = Transform {
            flip_v: true,
            ..ident()
        };
        t.apply(&img, 1, 2, 3, FillMode::Nearest, 0.0, &mut out);
        assert_eq!(out, vec![3.0, 4.0, 5.0, 0.0, 1.0, 2.0]);
    }

    #[test]
    fn draws_are_seeded_and_in_range() {
        let spec = AugmentSpec {
            rotation_range: 10.0,
            width_shift_range: 0.1,
            height_shift_range: 0.1,
            zoom_range: ZoomRange::Symmetric(0.1),
            ..Default::default()
        };
        let a = Augmenter::new(spec, 7);
        for i in 0..200 {
            let t = a.transform(3, i, 28, 28);
            assert_eq!(t, a.transform(3, i, 28, 28));
            assert!(t.theta.abs() <= 10.0);
            assert!(t.tx.abs() <= 2.8 + 1e-5 && t.ty.abs() <= 2.8 + 1e-5);
            assert!((0.9..=1.1).contains(&t.zx) && (0.9..=1.1).contains(&t.zy));
        }
        assert_ne!(a.transform(3, 0, 28, 28), a.transform(4, 0, 28, 28));
    }

    #[test]
    fn specs_are_checked() {
        assert!(
            AugmentSpec::from_toml("rotation_range = 10\nfill_mode = \"reflect\"", "a.toml")
                .is_ok()
        );
        let e = AugmentSpec::from_toml("rotaton_range = 10", "a.toml").unwrap_err();
        assert!(e.contains("a.toml") && e.contains("rotaton_range"), "{e}");
        let e = AugmentSpec::from_toml("zoom_range = [1.2, 0.8]", "a.toml").unwrap_err();
        assert!(e.contains("zoom_range"), "{e}");
        let e = AugmentSpec::from_toml("fill_mode = \"mirror\"", "a.toml").unwrap_err();
        assert!(e.contains("fill_mode") || e.contains("mirror"), "{e}");
    }
}
