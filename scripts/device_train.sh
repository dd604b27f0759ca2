#!/usr/bin/env bash
# The default recipe's teacher and three students on one GPU, from a data pack, in one command
# (configs/device-default.toml; docs/training.md, "On a GPU: the default recipe"). Run ON the
# device, from the tree that travelled, with the pack carried beside it:
#
#   bash scripts/device_train.sh                       # $OUT set; PACK=.device-pack, MINUTES=6
#   VIR_DEVICE_TINY=1 PACK=/tmp/pack OUT=/tmp/out bash scripts/device_train.sh   # tiny, CPU (the tests)
#
# Installs nothing: when the package is not installed it runs from the tree (PYTHONPATH); it needs
# torch, numpy, safetensors, typer and rich, and no PyAV. Trains into $RUN (default
# /tmp/vir-device-run; rerun to resume) within the budget, then writes to $OUT:
#   instantvir.safetensors   the int8 export (or instantvir.safetensors.part1, .part2, ... when it is
#                            over 16 MiB, the most one returned file may be (VIR_RETURN_MIB): cat them in order)
#   train_log.txt            the run's output
#   device_train.json        steps per stage, s/step, peak GPU memory, the last validations, the
#                            export's size and SHA-256
set -euo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder the results go to}"
PY=${PYTHON:-python3}
PACK=${PACK:-.device-pack}
RUN=${RUN:-/tmp/vir-device-run}
if [ "${VIR_DEVICE_TINY:-0}" = 1 ]; then
  CONFIG=configs/device-tiny.toml; MINUTES=${MINUTES:-2}
else
  CONFIG=configs/device-default.toml; MINUTES=${MINUTES:-6}
fi
export VIR_BLOCK_ATTENTION=${VIR_BLOCK_ATTENTION:-chunked}   # tens of tokens a window: no FlexAttention compile
"$PY" -c "import instantvir_cli" 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT" "$RUN"
[ -f "$PACK/manifest.json" ] || { echo "error: no data pack at $PACK (python scripts/pack_data.py $PACK, then carry it)" >&2; exit 9; }
OVERLAY="$RUN.toml"                                        # the config with this pack's path
printf 'extends = "%s"\n\n[data]\npack = "%s"\n' "$PWD/$CONFIG" "$(cd "$PACK" && pwd)" > "$OVERLAY"
START=$(date +%s)
set +e
"$PY" -u -m instantvir_cli distill --config "$OVERLAY" --out "$RUN" --max-minutes "$MINUTES" --resume \
  --no-progress > "$OUT/train_log.txt" 2>&1
RC=$?
set -e
tail -n 5 "$OUT/train_log.txt"
EXPORTED=0
if [ -f "$RUN/instantvir.safetensors" ]; then
  "$PY" -m instantvir_cli.distill.export "$RUN/instantvir.safetensors" "$RUN/instantvir-int8.safetensors" \
    --storage int8 >> "$OUT/train_log.txt" 2>&1 && EXPORTED=1
fi
"$PY" - "$RUN" "$OUT" "$RC" "$EXPORTED" "$(( $(date +%s) - START ))" "$CONFIG" "$MINUTES" <<'PY'
import hashlib, json, os, sys
from pathlib import Path

run, out = Path(sys.argv[1]), Path(sys.argv[2])
rc, exported, wall, config, minutes = int(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]), sys.argv[6], float(sys.argv[7])
LIMIT = int(float(os.environ.get("VIR_RETURN_MIB", "16")) * 2**20)  # what one returned file may be
PART = LIMIT // 16 * 15                                              # each part's size
log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()] if (run / "log.jsonl").is_file() else []
stages, validation = {}, {}
for r in log:
    if r["kind"] == "done":
        rate = r.get("steps_per_s")
        stages[r["stage"]] = {"step": r["step"], "total": r.get("total"), "steps_per_s": rate,
                              "s_per_step": round(1 / rate, 4) if rate else None, "seconds": r.get("seconds"),
                              "peak_gpu_gib": r.get("peak_gpu_gib")}
    elif r["kind"] == "val":
        validation[r["stage"]] = {k: v for k, v in r.items() if k not in ("kind", "stage", "time")}
for name, s in stages.items():
    s["stopped_by_budget"] = any(r["kind"] == "budget" and r["stage"] == name and r["step"] == s.get("step") for r in log)
summary = {"config": config, "max_minutes": minutes, "rc": rc, "wall_s": wall, "stages": stages,
           "validation": validation, "export": None}
try:
    import torch
    summary["torch"] = torch.__version__
    summary["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
except Exception as err:  # noqa: BLE001 - the summary is written whatever happens
    summary["device"] = f"unknown ({err})"
src = run / "instantvir-int8.safetensors"
if exported and src.is_file():
    data = src.read_bytes()
    files = [("instantvir.safetensors", data)] if len(data) <= LIMIT else [
        (f"instantvir.safetensors.part{i // PART + 1}", data[i:i + PART]) for i in range(0, len(data), PART)]
    for name, chunk in files:
        (out / name).write_bytes(chunk)
    summary["export"] = {"storage": "int8", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                         "files": [name for name, _ in files]}
(out / "device_train.json").write_text(json.dumps(summary, indent=2) + "\n")
print(f"summary: {out / 'device_train.json'}; export: {summary['export']['files'] if summary['export'] else 'none'}")
PY
exit "$RC"
