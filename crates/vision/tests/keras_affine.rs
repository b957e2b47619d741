//! Augmentation against Keras: `tests/fixtures/keras_affine.txt` holds a
//! random 9 × 12 image and Keras's `apply_affine_transform` output (scipy
//! `order=1`) for four transforms, one per fill mode, made by
//! `tests/fixtures/keras_affine.py`.

use vision::augment::{FillMode, Transform};

#[test]
fn affine_transforms_match_keras() {
    let text = include_str!("fixtures/keras_affine.txt");
    let mut lines = text.lines();
    let dims: Vec<usize> = lines
        .next()
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let (h, w) = (dims[0], dims[1]);
    let nums = |l: &str| -> Vec<f32> { l.split_whitespace().map(|v| v.parse().unwrap()).collect() };
    let img = nums(lines.next().unwrap());
    let mut cases = 0;
    while let (Some(params), Some(want)) = (lines.next(), lines.next()) {
        let p: Vec<&str> = params.split_whitespace().collect();
        let f = |i: usize| p[i].parse::<f32>().unwrap();
        let t = Transform {
            theta: f(0),
            tx: f(1),
            ty: f(2),
            shear: f(3),
            zx: f(4),
            zy: f(5),
            flip_h: false,
            flip_v: false,
        };
        let mode = match p[6] {
            "nearest" => FillMode::Nearest,
            "reflect" => FillMode::Reflect,
            "wrap" => FillMode::Wrap,
            "constant" => FillMode::Constant,
            m => panic!("mode {m}"),
        };
        let want = nums(want);
        let mut out = vec![0f32; h * w];
        t.apply(&img, 1, h, w, mode, f(7), &mut out);
        let worst = out
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-3,
            "{params}: worst difference {worst}\n got {out:?}\nwant {want:?}"
        );
        cases += 1;
    }
    assert_eq!(cases, 4);
}
