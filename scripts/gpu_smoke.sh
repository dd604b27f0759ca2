#!/usr/bin/env bash
# The full-scale path on one GPU, on random weights (nothing downloaded, no weights carried):
#   1. one student distill iteration at 832x480x81 with the teacher, the critic and umT5-XXL
#      (python -m instantvir_cli.distill.smoke): seconds per iteration, peak memory
#   2. vir bench --arch wan2.1-1.3b --vae lean16 --resolution 832x480 --frames 81 (restore speed)
#   3. vir bench ... --compare wan-vae: LeanVAE against Wan2.1's VAE at full size
# and a JSON summary in $OUT/gpu_smoke.json. Budget: under 8 minutes on one H200.
#
#   OUT=runs/gpu-smoke bash scripts/gpu_smoke.sh
#   VIR_SMOKE_TINY=1 OUT=/tmp/smoke bash scripts/gpu_smoke.sh     # the same steps at tiny size (CPU, the tests)
set -euo pipefail
OUT=${OUT:-runs/gpu-smoke}
PY=${PYTHON:-python}
mkdir -p "$OUT"
if [ "${VIR_SMOKE_TINY:-0}" = 1 ]; then
  TINY=--tiny; ARCH=tiny; VAE=tiny; RES=64x32; FRAMES=9
else
  TINY=; ARCH=wan2.1-1.3b; VAE=lean16; RES=832x480; FRAMES=81
fi
"$PY" -m instantvir_cli.distill.smoke "$OUT/distill.json" $TINY > "$OUT/distill.log" 2>&1 || echo '{"error": "distill smoke failed: see distill.log"}' > "$OUT/distill.json"
"$PY" -m instantvir_cli --quiet bench --arch "$ARCH" --vae "$VAE" --resolution "$RES" --frames "$FRAMES" --task sr4x --json \
  > "$OUT/bench.json" 2> "$OUT/bench.log" || echo '{"error": "bench failed: see bench.log"}' > "$OUT/bench.json"
"$PY" -m instantvir_cli --quiet bench --arch "$ARCH" --vae "$VAE" --resolution "$RES" --frames "$FRAMES" --task sr4x \
  --compare wan-vae --json > "$OUT/vae.json" 2> "$OUT/vae.log" || echo '{"error": "VAE comparison failed: see vae.log"}' > "$OUT/vae.json"
"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
summary = {name: json.loads((out / f"{name}.json").read_text() or "{}") for name in ("distill", "bench", "vae")}
(out / "gpu_smoke.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"summary: {out / 'gpu_smoke.json'}")
PY
