//! Predictions do not depend on how the individuals are batched: each one
//! predicted alone gives the same bits as all of them at once (which
//! `predict` splits into batches of its own), on every path this CPU runs.

use geno::{simulate, SimParams};
use kernels::SimdPath;
use model::ModelSpec;
use nn::Native;

/// Two convolutions wide enough for the AMX tiles (32 output channels,
/// thousands of columns), then the output straight from a dense layer
/// longer than a chunk of its dot products (2,048; here 159,872): no
/// activation or second layer to hide a difference in its sums, and long
/// enough that a batch of 64 crosses the threshold at which the sum's parts
/// run on threads, which a batch of one does not.
const SPEC: &str = r#"
name = "t"
input = "standardized"
init = "glorot"
layers = [
  { type = "conv1d", filters = 16, kernel = 5, activation = "relu" },
  { type = "max_pool1d", size = 2 },
  { type = "conv1d", filters = 32, kernel = 5, activation = "relu" },
  { type = "max_pool1d", size = 2 },
  { type = "flatten" },
  { type = "dense", units = 1 },
]
training = { loss = "mse", optimizer = { name = "adam" }, lr = 0.003, batch_size = 32, epochs = 1, val_fraction = 0.0 }
"#;

#[test]
fn an_individual_predicted_alone_gives_the_same_bits_as_in_a_batch() {
    let sim = simulate(&SimParams {
        n: 150,
        snps: 20_000,
        chromosomes: 2,
        qtl: 10,
        h2: 0.5,
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    let g = &sim.genotypes;
    let spec = ModelSpec::from_toml(SPEC, "t", "test").unwrap();
    let rows: Vec<usize> = (0..g.n_individuals()).collect();
    let mut paths = vec![SimdPath::detect()];
    paths.extend(SimdPath::available_bf16());
    for path in paths {
        let backend = Native::new().with_path(path).unwrap();
        let fitted = model::fit(
            backend,
            &spec,
            g,
            &model::TraitData::single("y", &sim.phenotype),
            &rows,
            1,
            &mut |_| {},
        )
        .unwrap();
        let all = fitted.predict(g, &rows).unwrap();
        assert!(all.iter().all(|v| v.is_finite()), "{path}: {all:?}");
        for &r in &rows {
            let alone = fitted.predict(g, &[r]).unwrap();
            assert_eq!(
                alone[0].to_bits(),
                all[r].to_bits(),
                "{path}: individual {r} alone {} against {} in the batch",
                alone[0],
                all[r]
            );
        }
    }
}
