#!/usr/bin/env bash
# GPU check for the candle CUDA backend, run on a GPU machine with the
# binaries built elsewhere (README, "Building for a GPU"):
#
#   GENOCNN=path/to/genocnn           built with --features cuda
#   BACKENDS_TEST=path/to/backends-*  the nn conformance test binary, built with
#                                     cargo test -p nn --features cuda --test backends --no-run
#   MNIST=dir                         MNIST IDX files (default: data/mnist, the bundled subset)
#   DEVICE=cuda:0                     (candle-cpu checks the script itself on a CPU machine)
#   EPOCHS=4                          epochs per timing (one warm-up, then the median)
#
# It runs the conformance tests on the device, times the peer genomic case
# and LeNet-5 epochs there and on the native backend, and prints samples/s
# and the agreement of predictions between the device and native.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${GENOCNN:?set GENOCNN to the genocnn binary built with --features cuda}"
DEVICE="${DEVICE:-cuda:0}"
MNIST="${MNIST:-data/mnist}"
EPOCHS="${EPOCHS:-4}"
OUT="${OUT:-$(mktemp -d)}"
mkdir -p "$OUT"
echo "== device $DEVICE; outputs in $OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

if [ -n "${BACKENDS_TEST:-}" ]; then
  echo "== conformance: every layer type and shipped config, forward and gradients within 1e-4 of native"
  if [ "${DEVICE%%:*}" = cuda ]; then
    GENOCNN_REQUIRE_CUDA=1 "$BACKENDS_TEST" cuda_conforms --nocapture
  else
    "$BACKENDS_TEST" candle_cpu_conforms --nocapture
  fi
fi

echo "== peer genomic case (2000 x 10,000 SNPs, batch 32, Adam), seconds per epoch"
"$GENOCNN" bench train --epochs "$EPOCHS" --device "$DEVICE" --json "$OUT/genomic-device.json" | tee "$OUT/genomic-device.txt"
"$GENOCNN" bench train --epochs "$EPOCHS" --device native --json "$OUT/genomic-native.json" | tee "$OUT/genomic-native.txt"

echo "== LeNet-5 on $MNIST (batch 64, Adam), seconds per epoch"
"$GENOCNN" bench lenet --epochs "$EPOCHS" --data-dir "$MNIST" --device "$DEVICE" --json "$OUT/lenet-device.json" | tee "$OUT/lenet-device.txt"
"$GENOCNN" bench lenet --epochs "$EPOCHS" --data-dir "$MNIST" --device native --json "$OUT/lenet-native.json" | tee "$OUT/lenet-native.txt"

echo "== agreement: a model trained on $DEVICE, predicted on $DEVICE and on native"
"$GENOCNN" train --geno data/example.bed --pheno data/example.pheno.csv --trait trait \
  --model configs/cnn1d-pez.toml --epochs 3 --device "$DEVICE" --out "$OUT/model" >/dev/null
"$GENOCNN" predict --model "$OUT/model" --geno data/example.bed --device "$DEVICE" --out "$OUT/pred-device.csv" >/dev/null
# fp32 on native too (its default is bf16 on CPUs with AVX512-BF16).
"$GENOCNN" predict --model "$OUT/model" --geno data/example.bed --device native --precision fp32 --out "$OUT/pred-native.csv" >/dev/null

python3 - "$OUT" <<'PY'
import csv, json, sys
out = sys.argv[1]
def j(n): return json.load(open(f"{out}/{n}.json"))
gd, gn, ld, ln = j("genomic-device"), j("genomic-native"), j("lenet-device"), j("lenet-native")
print(f"native ran in {gn.get('precision', 'fp32')} (--precision auto); the device in {gd.get('precision', 'fp32')}")
print(f"genomic: device {gd['median_epoch_seconds']:.3f} s/epoch, native {gn['median_epoch_seconds']:.3f} s/epoch: "
      f"{gn['median_epoch_seconds'] / gd['median_epoch_seconds']:.2f}x (device speed-up); "
      f"inference {gd['infer_samples_per_second']:.0f} vs {gn['infer_samples_per_second']:.0f} samples/s; "
      f"training {2000 / gd['median_epoch_seconds']:.0f} vs {2000 / gn['median_epoch_seconds']:.0f} samples/s")
print(f"lenet: device {ld['median_epoch_seconds']:.3f} s/epoch, native {ln['median_epoch_seconds']:.3f} s/epoch: "
      f"{ln['median_epoch_seconds'] / ld['median_epoch_seconds']:.2f}x (device speed-up); test accuracy {ld['test_accuracy']:.4f} vs {ln['test_accuracy']:.4f}")
rd = [float(r["prediction"]) for r in csv.DictReader(open(f"{out}/pred-device.csv"))]
rn = [float(r["prediction"]) for r in csv.DictReader(open(f"{out}/pred-native.csv"))]
scale = max(abs(v) for v in rn)
worst = max(abs(a - b) for a, b in zip(rd, rn)) / scale
print(f"agreement: {len(rd)} predictions, max |device - native| / max|native| = {worst:.2e} ({'PASS' if worst <= 1e-4 else 'FAIL'} at 1e-4)")
sys.exit(0 if worst <= 1e-4 else 1)
PY
