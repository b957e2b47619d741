#!/usr/bin/env bash
# Issue 15's transfer figures: LeNet-5 pretrained on MNIST digits 0–4 and
# moved to 5–9 with 500 training images; a cnn1d-pez pretrained on trait A
# and moved to a correlated trait B with 300 phenotyped individuals.
# Usage: scripts/transfer-figures.sh OUT [MNIST_DIR]   (release build)
# The networks run in fp32, as for the README's figures, on any CPU
# (PRECISION=bf16 or auto to change that).
set -euo pipefail
OUT=${1:?usage: $0 OUT [MNIST_DIR]}
MNIST=${2:-../shared/data/mnist}
G=${G:-target/release/genocnn}
PRECISION=${PRECISION:-fp32}
X=(--precision "$PRECISION")
mkdir -p "$OUT"

# --- MNIST: 0–4 → 5–9 ---
C=(--dataset mnist --data-dir "$MNIST" --classes 5-9 --train-limit 500 "${X[@]}")
$G image train "${X[@]}" --dataset mnist --data-dir "$MNIST" --model configs/lenet5.toml --classes 0-4 --epochs 10 --out "$OUT/mnist-pre"
# Scratch gets the 60 epochs the fine-tuned model has in its two phases.
$G image train "${C[@]}" --model configs/lenet5.toml --epochs 60 --out "$OUT/mnist-scratch"
# The course's recipe: the convolutional base kept, a new dense head.
$G image train "${C[@]}" --init-from "$OUT/mnist-pre" --reinit head --freeze base --epochs 30 --out "$OUT/mnist-frozen"
$G image train "${C[@]}" --init-from "$OUT/mnist-pre" --reinit head --freeze base --epochs 30 \
  --fine-tune-epochs 30 --fine-tune-lr 3e-4 --out "$OUT/mnist-finetuned"

# --- Genomics: trait A (2000 phenotyped) → trait B (300 phenotyped) ---
$G simulate --n 2000 --snps 10000 --qtl 200 --traits 2 --h2 0.5 --genetic-correlation 0.8 \
  --seed 21 --no-csv --out "$OUT/sim"
python3 - "$OUT" <<'PY'
import csv, sys
out = sys.argv[1]
rows = list(csv.reader(open(f"{out}/sim.pheno.csv")))[1:]
with open(f"{out}/A.csv", "w") as f:
    f.write("id,A\n")
    for r in rows:
        f.write(f"{r[0]},{r[1]}\n")
with open(f"{out}/B300.csv", "w") as f:
    f.write("id,B\n")
    for i, r in enumerate(rows):
        f.write(f"{r[0]},{r[2] if i < 300 else 'NA'}\n")
PY
P=(--geno "$OUT/sim.bed")
$G train "${P[@]}" "${X[@]}" --pheno "$OUT/A.csv" --trait A --model configs/cnn1d-pez.toml --out "$OUT/gA"
B=("${P[@]}" --pheno "$OUT/B300.csv" --trait B)
N=("${B[@]}" "${X[@]}")
$G train "${N[@]}" --model configs/cnn1d-pez.toml --out "$OUT/gB-scratch"
$G train "${N[@]}" --init-from "$OUT/gA" --freeze base --out "$OUT/gB-frozen"
$G train "${N[@]}" --init-from "$OUT/gA" --freeze base --fine-tune-epochs 30 --fine-tune-lr 5e-5 --out "$OUT/gB-finetuned"
$G train "${N[@]}" --init-from "$OUT/gA" --out "$OUT/gB-init-only"
$G gblup "${B[@]}" --out "$OUT/gB-gblup"
for m in gB-scratch gB-frozen gB-finetuned gB-init-only gB-gblup gA; do
  $G predict --model "$OUT/$m" "${P[@]}" "${X[@]}" --out "$OUT/$m.pred.csv"
done
python3 - "$OUT" <<'PY'
import csv, sys, json
out = sys.argv[1]
rows = list(csv.reader(open(f"{out}/sim.pheno.csv")))[1:]
test = {r[0]: float(r[2]) for i, r in enumerate(rows) if i >= 300}
def r(x, y):
    n = len(x); mx = sum(x)/n; my = sum(y)/n
    sxy = sum((a-mx)*(b-my) for a, b in zip(x, y))
    sx = sum((a-mx)**2 for a in x) ** .5; sy = sum((b-my)**2 for b in y) ** .5
    return sxy / (sx*sy)
print("trait B, r on the 1700 individuals without a B record:")
for m in ["gB-scratch", "gB-frozen", "gB-finetuned", "gB-init-only", "gB-gblup", "gA"]:
    p = {row[0]: float(row[1]) for row in list(csv.reader(open(f"{out}/{m}.pred.csv")))[1:]}
    ids = sorted(test)
    print(f"  {m:14s} {r([p[i] for i in ids], [test[i] for i in ids]):.3f}")
print("MNIST 5–9 test accuracy (500 training images):")
for m in ["mnist-scratch", "mnist-frozen", "mnist-finetuned"]:
    s = json.load(open(f"{out}/{m}/summary.json"))
    print(f"  {m:16s} {s['test_accuracy']:.4f}  {s['seconds_per_epoch']:.3f} s/epoch")
PY
