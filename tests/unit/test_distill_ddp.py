"""torchrun on the CPU (gloo): DDP (and FSDP2) keep the ranks' parameters identical, and 2
processes x batch 2 train like 1 process x batch 4 (the data is sharded by global sample index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instantvir_cli.config import DistillConfig, to_dict
from instantvir_cli.distill.trainer import run_distill

sys.path.insert(0, str(Path(__file__).parent))
from test_distill_trainer import records, tiny  # noqa: E402

# Runs the trainer under torchrun and dumps every rank's trained weights at the end of each stage.
WORKER = r'''
import json, sys, torch
from instantvir_cli.config import DistillConfig, from_dict
from instantvir_cli.distill import stages
from instantvir_cli.distill.dist import unwrap, full_state_dict
from instantvir_cli.distill.trainer import run_distill

cfg = from_dict(DistillConfig, json.loads(open(sys.argv[1]).read()))
finish = stages.Stage.finish
def dump_then_finish(self, steps):
    sds = {k: full_state_dict(tr.module) for k, tr in self.trained.items()}
    rank = torch.distributed.get_rank()
    torch.save(sds, f"{cfg.run.out}/rank{rank}_{self.name}.pt")
    return type(self).__mro__[0].__dict__.get("_orig_finish", finish)(self, steps)
for cls in (stages.VAEStage, stages.TeacherStage, stages.StudentStage):
    cls._orig_finish = cls.finish
    cls.finish = dump_then_finish
run_distill(cfg)
'''


def torchrun(n: int, script: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n),
           str(script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_match_one(clips, tmp_path, parallel):
    batch = {"batch": 4}
    def cfg(out: Path, parallel: str = "ddp") -> DistillConfig:
        return tiny(clips, out, run={"parallel": parallel}, vae={**batch, "steps": 2}, teacher={**batch, "steps": 2},
                    student={**batch, "steps": 4, "student_every": 2, "dmd_warmup": 0})
    two = tmp_path / "two"
    two.mkdir()
    spec = tmp_path / "cfg.json"
    spec.write_text(json.dumps(to_dict(cfg(two, parallel))))
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    r = torchrun(2, worker, str(spec))
    assert r.returncode == 0, r.stderr[-3000:]
    for stage in ("vae", "teacher", "student_sr4x"):
        a = torch.load(two / f"rank0_{stage}.pt", weights_only=True)
        b = torch.load(two / f"rank1_{stage}.pt", weights_only=True)
        for module in a:                                              # identical on both ranks
            if parallel == "fsdp" and module != "vae" and not b[module]:
                continue                                              # FSDP gathers full weights on rank 0 only
            assert all(torch.equal(a[module][k], b[module][k]) for k in a[module]), (stage, module)
    assert json.loads((two / "log.jsonl").read_text().splitlines()[0])["world"] == 2

    one = tmp_path / "one"
    run_distill(cfg(one))
    for stage in ("vae", "teacher", "student_sr4x"):
        r1, r2 = records(one, stage=stage), records(two, stage=stage)
        keys = [k for k in r1[0] if k.endswith("loss") or k in ("meas", "dmd", "l1", "kl")]
        assert keys
        for x, y in zip(r1, r2):
            for k in keys:
                if k in x:
                    assert y[k] == pytest.approx(x[k], rel=1e-4, abs=1e-6), (stage, x["step"], k)
    s1 = torch.load(one / "student_sr4x" / "state.pt", weights_only=True)["modules"]["student"]
    s2 = torch.load(two / "rank0_student_sr4x.pt", weights_only=True)["student"]
    assert all(torch.allclose(s1[k], s2[k], rtol=1e-4, atol=1e-6) for k in s1)
