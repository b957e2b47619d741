#!/usr/bin/env bash
# Issue 15's multi-trait figures: CV2 on two simulated traits (rg 0.8, the
# second missing for 70%), and wheat599's four environments in CV1 and CV2.
# Usage: scripts/multitrait-figures.sh OUT [SHARED_DATA]   (release build)
# The networks run in fp32, as for the README's figures, on any CPU
# (PRECISION=bf16 or auto to change that).
set -euo pipefail
OUT=${1:?usage: $0 OUT [SHARED_DATA]}
DATA=${2:-../shared/data}
G=${G:-target/release/genocnn}
PRECISION=${PRECISION:-fp32}
mkdir -p "$OUT"

# --- Simulation: A on everyone, B on 30% ---
$G simulate --n 2000 --snps 10000 --qtl 200 --traits 2 --h2 0.5 --genetic-correlation 0.8 \
  --missing-rate 0,0.7 --seed 21 --no-csv --out "$OUT/sim"
S=(--geno "$OUT/sim.bed" --pheno "$OUT/sim.pheno.csv" --folds 5 --seed 1 --precision "$PRECISION")
# CV2: B predicted with A recorded on the test individuals.
$G cv "${S[@]}" --trait trait2 --predictor-traits trait1 --scheme cv2 \
  --models mtgblup,gblup,configs/cnn1d-pez.toml,single:configs/cnn1d-pez.toml --out "$OUT/sim-cv2"
# CV1: both traits from genotypes alone (multi-trait network: two outputs).
$G cv "${S[@]}" --trait trait1,trait2 \
  --models gblup,configs/cnn1d-pez.toml,single:configs/cnn1d-pez.toml --out "$OUT/sim-cv1"

# --- wheat599: four environments ---
W=(--geno "$DATA/wheat599/wheat.X" --pheno "$DATA/wheat599/wheat.Y" --trait 1,2,3,4 --folds 10 --seed 1 --precision "$PRECISION")
$G cv "${W[@]}" --scheme cv1 --models gblup,configs/cnn1d-pez.toml --out "$OUT/wheat-cv1"
$G cv "${W[@]}" --scheme cv2 --models gblup,configs/cnn1d-pez.toml --out "$OUT/wheat-cv2"

python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
for run in ["sim-cv2", "sim-cv1", "wheat-cv1", "wheat-cv2"]:
    j = json.load(open(f"{out}/{run}/summary.json"))
    print(f"{run}:")
    for t, s in j["by_trait"].items():
        cells = [f"{m} {v['r_mean']:.3f}±{v['r_se']:.3f}" for m, v in s["models"].items()]
        print(f"  {t:8s} " + "  ".join(cells))
PY
