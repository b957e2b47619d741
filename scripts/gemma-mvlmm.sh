#!/usr/bin/env bash
# Regenerates tests/fixtures/gemma/mouse-cd8-mch-mvlmm.txt: GEMMA's mvLMM
# null-model REML (Vg, Ve) on mouse_hs1940 CD8 and MCH, with genocnn's
# VanRaden GRM as the kinship. Needs Debian's gemma and python3 with numpy.
set -euo pipefail
M=${1:-../shared/data/mouse_hs1940}
G=${G:-target/release/genocnn}
W=$(mktemp -d)
$G grm --geno "$M/mouse_hs1940.bed" --out "$W/grm" > /dev/null
python3 - "$W" "$M" <<'PY'
import sys, numpy as np
w, m = sys.argv[1], sys.argv[2]
ids = [l.split()[1] for l in open(f"{w}/grm.grm.id")]
n = len(ids)
raw = np.fromfile(f"{w}/grm.grm.bin", dtype=np.float32)
K = np.zeros((n, n))
k = 0
for i in range(n):
    K[i, :i + 1] = raw[k:k + i + 1]
    k += i + 1
K = K + K.T - np.diag(np.diag(K))
np.savetxt(f"{w}/K.txt", K, fmt="%.9g", delimiter="\t")
with open(f"{w}/pheno16.txt", "w") as f:
    for l in open(f"{m}/mouse_hs1940.pheno.txt"):
        r = l.split()
        a, b = r[0], r[5]
        if "NA" in (a, b):
            a = b = "NA"
        f.write(f"{a}\t{b}\n")
PY
for e in bed bim fam; do ln -s "$(realpath "$M/mouse_hs1940.$e")" "$W/mouse_hs1940.$e"; done
head -3 "$M/mouse_hs1940.bim" | awk '{print $2}' > "$W/snps.txt"
(cd "$W" && gemma -bfile mouse_hs1940 -p pheno16.txt -k K.txt -lmm 1 -n 1 2 -snps snps.txt -o mv16 > gemma.log 2>&1)
sed -n '/REMLE estimate for Vg/,/REMLE likelihood/p' "$W/gemma.log"
