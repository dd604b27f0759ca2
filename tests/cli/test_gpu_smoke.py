"""scripts/gpu_smoke.sh in its tiny CPU form (VIR_SMOKE_TINY=1): the same steps and entry points the
GPU run takes at full size, so the script is known to work before a device is lent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from instantvir_cli.distill.smoke import run

SCRIPT = Path(__file__).parents[2] / "scripts" / "gpu_smoke.sh"


def test_smoke_iteration_at_tiny_size():
    r = run(tiny=True, iters=1, device="cpu")
    assert r["window"] == {"frames": 9, "height": 32, "width": 64} and r["latent"] == [16, 3, 4, 8]
    assert r["s_per_iter"] > 0 and r["loss"] == r["loss"] and r["critic_loss"] > 0   # finite
    assert r["params"]["text_encoder"] > 0 and r["attention"] == "chunked"


def test_gpu_smoke_script_tiny(tmp_path):
    env = {**os.environ, "VIR_SMOKE_TINY": "1", "OUT": str(tmp_path), "PYTHON": sys.executable}
    p = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    summary = json.loads((tmp_path / "gpu_smoke.json").read_text())
    assert set(summary) == {"distill", "bench", "vae"}
    assert not any("error" in v for v in summary.values()), summary
    assert summary["distill"]["tiny"] and summary["bench"]["frames"] == 9
    assert summary["vae"]["compare"]["wan_vae_s"] > 0
