//! The network inputs a genotype store decodes to, against naive
//! references written from the encodings' definitions.

use geno::{Individual, Marker, PackedGenotypes, Standardizer};
use model::train::{BatchDecoder, InputMap};
use model::InputEncoding;

/// 7 individuals (not a multiple of 4) × 5 markers, with missing calls.
fn store() -> PackedGenotypes {
    let dose = |i: usize, j: usize| -> Option<u8> {
        match (i * 3 + j * 5) % 7 {
            6 => None,
            k => Some((k % 3) as u8),
        }
    };
    PackedGenotypes::from_fn(
        (0..7)
            .map(|i| Individual::from_id(format!("i{i}")))
            .collect(),
        (0..5).map(|j| Marker::from_id(format!("m{j}"))).collect(),
        dose,
    )
}

#[test]
fn one_hot_has_one_channel_per_dosage_and_zeros_for_a_missing_call() {
    let g = store();
    let st = Standardizer::fit(&g, None);
    // Marker 2 is flipped: its dosages count the other allele.
    let mut map = InputMap::identity(5);
    map.flipped[2] = true;
    let mut dec = BatchDecoder::new(&g, InputEncoding::OneHot, &st, &map);
    let rows = [6, 0, 3, 4];
    let (x, shape) = dec.decode(&rows);
    assert_eq!(shape, [4, 3, 5]);
    for (r, &i) in rows.iter().enumerate() {
        for j in 0..5 {
            let d = g.dosage(i, j).map(|d| if j == 2 { 2 - d } else { d });
            for c in 0..3 {
                let want = if d == Some(c as u8) { 1.0 } else { 0.0 };
                assert_eq!(
                    x[(r * 3 + c) * 5 + j],
                    want,
                    "row {i}, marker {j}, channel {c}"
                );
            }
        }
    }
}

#[test]
fn standardized_input_is_the_centred_scaled_dosage_with_missing_at_zero() {
    let g = store();
    let st = Standardizer::fit(&g, None);
    let mut dec = BatchDecoder::new(&g, InputEncoding::Standardized, &st, &InputMap::identity(5));
    let rows: Vec<usize> = (0..7).collect();
    let (x, shape) = dec.decode(&rows);
    assert_eq!(shape, [7, 1, 5]);
    for j in 0..5 {
        // Population (n) variance of the called dosages, as the GRM's 2pq is.
        let called: Vec<f64> = (0..7)
            .filter_map(|i| g.dosage(i, j))
            .map(f64::from)
            .collect();
        let mean = called.iter().sum::<f64>() / called.len() as f64;
        let var = called.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / called.len() as f64;
        for i in 0..7 {
            let v = x[i * 5 + j] as f64;
            let want = match g.dosage(i, j) {
                None => 0.0,
                Some(_) if var == 0.0 => 0.0,
                Some(d) => (f64::from(d) - mean) / var.sqrt(),
            };
            assert!(
                (v - want).abs() < 1e-5,
                "individual {i}, marker {j}: {v} vs {want}"
            );
        }
    }
}
