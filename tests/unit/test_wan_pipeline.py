"""vir distill on Wan2.1-style weights: foreign files anywhere, captions, guidance, the teacher's
VAE space. Tiny random weights in the published layouts (models.tiny_wan, wan_keys, the LeanVAE
.ckpt layout); transformers and diffusers are test dependencies (missing, these fail)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch

from instantvir_cli.config import DistillConfig, from_dict
from instantvir_cli.distill.captions import find_captions
from instantvir_cli.distill.dist import DistEnv
from instantvir_cli.distill.losses import DMD, guided
from instantvir_cli.distill.stages import StudentStage
from instantvir_cli.distill.trainer import build_context, run_distill
from instantvir_cli.distill.weights import artifact_identity, resolve_path
from instantvir_cli.errors import CheckpointError, ConfigError
from instantvir_cli.models.checkpoint import load_checkpoint
from instantvir_cli.models.dit import DIT_PRESETS, DiT
from instantvir_cli.models.tiny_wan import TEXT_DIM, write_tiny_wan
from instantvir_cli.models.wan_keys import to_wan_state_dict

sys.path.insert(0, str(Path(__file__).parent))
from test_vae import TINY_ARGS, _random_published  # noqa: E402  (the published LeanVAE layout)


def randomize(m, std=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return m


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Wan-layout teacher (original names, .pth), LeanVAE .ckpt, tiny umT5/tokenizer/Wan VAE."""
    d = tmp_path_factory.mktemp("foreign")
    write_tiny_wan(d / "wan")
    # Wan's head dim is 128 (the head count is not in the weights): width 256 = 2 heads
    dit = randomize(DiT(dataclasses.replace(DIT_PRESETS["tiny"], dim=256, heads=2, depth=1, text_dim=TEXT_DIM)), 0.05)
    torch.save(to_wan_state_dict(dit.state_dict(), "original"), d / "wan_dit.pth")
    torch.save({"args": dict(TINY_ARGS, latent_dim=16), "state_dict": _random_published(dict(TINY_ARGS, latent_dim=16))},
               d / "LeanVAE-dim16.ckpt")
    return d


def config(clips, foreign, out, **student):
    return from_dict(DistillConfig, {
        "run": {"out": str(out), "stages": ["student"], "log_every": 1, "checkpoint_every": 0, "val_every": 0,
                "threads": 1},
        "data": {"paths": [str(clips)], "footage": [], "images": [], "val_clips": ["val_b"], "frames": 5,
                 "crop": 32, "val_frames": 5, "val_size": 32, "workers": 0, "caption": "a cat",
                 "captions": {"train_a": "a red car driving on a wet road"}},
        "text": {"encoder": "${VIR_TEST_WAN}"},
        "vae": {"init": str(foreign / "LeanVAE-dim16.ckpt")},
        "teacher": {"init": str(foreign / "wan_dit.pth"), "vae": "${VIR_TEST_WAN}/vae"},
        "student": {"tasks": ["inpaint"], "steps": 2, "batch": 1, "student_every": 1,
                    "causal": {"block_frames": 1, "cache_blocks": 1}, "prompt": "a cat", **student},
    })


@pytest.fixture()
def wan_env(foreign, monkeypatch):
    monkeypatch.setenv("VIR_TEST_WAN", str(foreign / "wan"))


def test_student_stage_runs_on_foreign_weights_only(clips, foreign, wan_env, tmp_path):
    """Teacher and critic from Wan's layout, the student's VAE from a LeanVAE .ckpt, the teacher's
    VAE from diffusers' layout, text from umT5: the export restores with the recorded prompt."""
    cfg = config(clips, foreign, tmp_path / "run")
    result = run_distill(cfg)
    ck = load_checkpoint(result.export)
    assert ck.header["text"]["prompt"] == "a cat" and ck.header["text"]["dim"] == TEXT_DIM
    assert ck.modules["text"]["prompt"].shape == (512, TEXT_DIM)
    assert ck.header["dit"]["text_dim"] == TEXT_DIM
    # resuming identifies the foreign files by path, size and content: finished, nothing retrained
    again = run_distill(cfg, resume=True)
    assert again.rates == {}


def test_foreign_files_are_identified_by_content(foreign, tmp_path):
    a = artifact_identity(foreign / "wan_dit.pth")
    assert a == artifact_identity(foreign / "wan_dit.pth")
    sd = torch.load(foreign / "wan_dit.pth", weights_only=True)
    sd["head.head.bias"] = sd["head.head.bias"] + 1
    torch.save(sd, tmp_path / "wan_dit.pth")
    assert artifact_identity(tmp_path / "wan_dit.pth") != a
    assert artifact_identity(foreign / "wan") == artifact_identity(foreign / "wan")   # a folder


def test_captions_beside_clips_and_in_the_config(clips, foreign, wan_env, tmp_path):
    cfg = config(clips, foreign, tmp_path / "run")
    ctx = build_context(cfg, DistEnv())
    assert ctx.captions == {"train_a": "a red car driving on a wet road", "val_b": "a cat"}
    (tmp_path / "c").mkdir()
    for f in clips.iterdir():
        (tmp_path / "c" / f.name).symlink_to(f)
    (tmp_path / "c" / "val_b.txt").write_text("  a globe turning slowly in space \n")
    cfg2 = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, paths=(str(tmp_path / "c"),)))
    caps = find_captions(build_context(cfg2, DistEnv()).sources, cfg2.data)
    assert caps["val_b"] == "a globe turning slowly in space"
    bad = dataclasses.replace(cfg.data, captions={"nothere": "x"})
    with pytest.raises(ConfigError, match="data.captions: no source named 'nothere'"):
        find_captions(ctx.sources, bad)


def test_guidance_and_teacher_space(clips, foreign, wan_env, tmp_path):
    stage = StudentStage(build_context(config(clips, foreign, tmp_path / "run"), DistEnv()), "inpaint")
    teacher = randomize(stage.teacher, 0.05, seed=1)
    z = torch.randn(1, 16, 2, 4, 4)
    t = torch.tensor([500.0])
    c = stage.ctx.text.contexts(["a red car driving on a wet road"])
    n = stage.negative
    with torch.no_grad():
        v_c = teacher(z, t, c)
        assert torch.allclose(guided(teacher, c, n, 1.0)(z, t), v_c, atol=1e-5)       # g = 1: the conditional
        assert torch.allclose(guided(teacher, c, n, 0.0)(z, t), teacher(z, t, n), atol=1e-5)  # g = 0: the negative
        assert torch.allclose(guided(teacher, c, c, 3.5)(z, t), v_c, atol=1e-5)       # same prompts: no guidance
        assert not torch.allclose(guided(teacher, c, n, 3.5)(z, t), v_c, atol=1e-3)   # the negative prompt pushes
    assert stage.negative.shape == (1, 512, TEXT_DIM)
    # the paper's teacher space: E_T(D_S(z_hat)), with gradients through both VAEs
    z_hat = torch.randn(1, 16, 2, 4, 4, requires_grad=True)
    z_t = stage.prior_space(z_hat)
    assert z_t.shape == z_hat.shape and not torch.allclose(z_t, z_hat)
    z_t.square().sum().backward()
    assert z_hat.grad.abs().sum() > 0
    # the release's option: the noisy latent converted; g stays in the student's space
    stage.c = dataclasses.replace(stage.c, teacher_space="noisy")
    real, fake, convert = stage.scores(c)
    assert convert is not None and stage.prior_space(z_hat) is z_hat
    loss, _ = DMD()(z_hat, real, fake, torch.tensor([7]), None, convert)
    assert torch.isfinite(loss).all() and float(loss.detach()) > 0


class _Toy(torch.nn.Module):
    """v(z, t, ctx) = z * ctx[:, 0, 0] + t / 1000 + ctx[:, 0, 1]: distinct cond and uncond outputs."""

    forward_with_cfg = DiT.forward_with_cfg

    def forward(self, z, t, ctx):
        k = ctx[:, 0, 0].view(-1, 1, 1, 1, 1)
        b = ctx[:, 0, 1].view(-1, 1, 1, 1, 1)
        return z * k + torch.as_tensor(t).view(-1, 1, 1, 1, 1) / 1000 + b


def test_guidance_is_uncond_plus_g_cond_minus_uncond():
    net = _Toy()
    z = torch.randn(2, 4, 2, 3, 3)
    t = torch.tensor([300.0, 700.0])
    c = torch.tensor([[[2.0, 0.5]], [[-1.0, 0.25]]])                 # (B, Lc, text_dim)
    n = torch.tensor([[[0.5, -0.3]]])                                 # (1, Lc, text_dim)
    v_c = z * c[:, 0, 0].view(-1, 1, 1, 1, 1) + t.view(-1, 1, 1, 1, 1) / 1000 + c[:, 0, 1].view(-1, 1, 1, 1, 1)
    v_u = z * 0.5 + t.view(-1, 1, 1, 1, 1) / 1000 - 0.3
    assert not torch.allclose(v_c, v_u)
    for g in (0.0, 1.0, 3.5):
        assert torch.allclose(guided(net, c, n, g)(z, t), v_u + g * (v_c - v_u), atol=1e-6)
    # the release's cond + s (cond - uncond) is real_guidance = s + 1
    assert torch.allclose(guided(net, c, n, 4.5)(z, t), v_c + 3.5 * (v_c - v_u), atol=1e-5)
    assert not torch.allclose(guided(net, c, n, 3.5)(z, t), v_c + 3.5 * (v_c - v_u), atol=1e-3)


def test_bad_weights_are_one_error_before_anything_is_written(clips, foreign, wan_env, tmp_path, monkeypatch):
    out = tmp_path / "run"
    cfg = config(clips, foreign, out)
    with pytest.raises(CheckpointError, match=r"^teacher\.init: not found: .*nowhere\.pth"):
        run_distill(dataclasses.replace(cfg, teacher=dataclasses.replace(cfg.teacher, init=str(tmp_path / "nowhere.pth"))))
    monkeypatch.delenv("VIR_TEST_WAN")
    with pytest.raises(ConfigError, match=r"^teacher\.vae: environment variable VIR_TEST_WAN is not set"):
        run_distill(cfg)
    assert not out.exists()
    with pytest.raises(ConfigError, match="VIR_TEST_WAN"):
        resolve_path("${VIR_TEST_WAN}/x", "text.encoder")


# ------------------------------------------------------------------ text encoded at start-up

def test_text_encoder_is_freed_before_training(clips, foreign, wan_env, tmp_path, monkeypatch):
    """Every prompt is encoded at start-up; no reference to the encoder survives into the stages."""
    import weakref

    from instantvir_cli.models.text import TextEncoder

    refs, load = [], TextEncoder.load.__func__

    def tracked(cls, *args, **kwargs):
        enc = load(cls, *args, **kwargs)
        refs.extend([weakref.ref(enc), weakref.ref(enc.model)])
        return enc

    monkeypatch.setattr(TextEncoder, "load", classmethod(tracked))
    alive = []

    def on_event(e):
        if e.kind in ("stage", "step"):
            import gc

            gc.collect()
            alive.append(any(r() is not None for r in refs))

    run_distill(config(clips, foreign, tmp_path / "run"), max_steps=1, on_event=on_event)
    assert len(refs) == 2 and alive and not any(alive)
    assert (tmp_path / "run" / "text.pt").is_file()


def test_cached_contexts_equal_the_encoders(clips, foreign, wan_env, tmp_path):
    from instantvir_cli.distill.captions import run_prompts
    from instantvir_cli.models.text import WAN_NEGATIVE_PROMPT, TextEncoder, count_tokens

    cfg = config(clips, foreign, tmp_path / "run")
    ctx = build_context(cfg, DistEnv())
    prompts = run_prompts(cfg, ctx.captions)
    assert set(prompts) == {"a red car driving on a wet road", "a cat", "", WAN_NEGATIVE_PROMPT}
    enc = TextEncoder.load(foreign / "wan")
    for p in prompts:                                           # one at a time, on the fly
        assert torch.equal(ctx.text.contexts([p]), enc.encode([p])), p
    assert torch.equal(ctx.text.negative(), enc.encode([WAN_NEGATIVE_PROMPT]))
    both = ctx.text.contexts(["a cat", "a red car driving on a wet road"])
    assert both.shape == (2, 512, TEXT_DIM) and both.dtype == torch.float32
    n = count_tokens(enc.tokenizer, "a cat")
    assert (both[0, n:] == 0).all() and (both[0, :n].abs().sum(-1) > 0).all()     # zero past "a cat</s>"
    with pytest.raises(KeyError, match="not encoded at start-up"):
        ctx.text.contexts(["a prompt nobody named"])


def test_resume_is_exact_and_reads_the_saved_contexts(clips, foreign, wan_env, tmp_path, monkeypatch):
    from instantvir_cli.models.text import TextEncoder

    ref = tmp_path / "ref"
    run_distill(config(clips, foreign, ref))                    # 2 steps
    out = tmp_path / "b"
    run_distill(config(clips, foreign, out), max_steps=1)

    def no_encoder(*a, **k):
        raise AssertionError("the encoder was loaded on resume")

    monkeypatch.setattr(TextEncoder, "load", no_encoder)
    run_distill(config(clips, foreign, out), resume=True)
    log = (out / "log.jsonl").read_text()
    assert '"kind": "resume", "stage": "student_inpaint", "step": 1' in log
    a = torch.load(ref / "student_inpaint" / "state.pt", weights_only=True)
    b = torch.load(out / "student_inpaint" / "state.pt", weights_only=True)
    assert a["step"] == b["step"] == 2
    for k in a["modules"]:                                      # student and critic, bit for bit
        assert a["modules"][k].keys() == b["modules"][k].keys()
        assert all(torch.equal(v, b["modules"][k][n]) for n, v in a["modules"][k].items()), k
        sa, sb = a["optim"][k]["state"], b["optim"][k]["state"]
        assert all(torch.equal(sa[i][j], sb[i][j]) for i in sa for j in sa[i]), k
    ta, tb = (torch.load(d / "text.pt", weights_only=True)["rows"] for d in (ref, out))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize("text,why", [(" \n", "empty"), ("cat " * 600, "more than the text encoder's 512")])
def test_bad_caption_file_is_one_error_before_anything_is_written(clips, foreign, wan_env, tmp_path, text, why):
    (tmp_path / "c").mkdir()
    for f in clips.iterdir():
        (tmp_path / "c" / f.name).symlink_to(f)
    (tmp_path / "c" / "train_a.txt").write_text(text)
    cfg = config(tmp_path / "c", foreign, tmp_path / "run")
    with pytest.raises(ConfigError) as err:
        run_distill(cfg)
    msg = str(err.value)
    assert err.value.exit_code == 9 and "\n" not in msg
    assert msg.startswith(f"caption file {tmp_path / 'c' / 'train_a.txt'}: ") and why in msg
    assert not (tmp_path / "run").exists()


def test_other_ranks_and_a_changed_encoder(clips, foreign, wan_env, tmp_path, monkeypatch):
    """Rank 0 encodes and writes text.pt; another rank reads it without an encoder; an encoder of
    another identity encodes every prompt anew."""
    from instantvir_cli.distill.captions import RunText
    from instantvir_cli.models.text import TextEncoder

    cfg = config(clips, foreign, tmp_path / "run")
    path = tmp_path / "text.pt"
    prompts = ["a cat", "", "a red car driving on a wet road"]
    main = RunText.prepare(cfg, prompts, DistEnv(), path)
    monkeypatch.setattr(DistEnv, "barrier", lambda self: None)
    load = TextEncoder.load
    monkeypatch.setattr(TextEncoder, "load", lambda *a, **k: pytest.fail("rank 1 loaded the encoder"))
    other = RunText.prepare(cfg, prompts, DistEnv(rank=1, world=2), path)
    assert torch.equal(other.contexts(prompts), main.contexts(prompts)) and other.source == main.source
    monkeypatch.setattr(TextEncoder, "load", load)
    data = torch.load(path, weights_only=True)
    data["source"] = {**data["source"], "tokenizer": "elsewhere"}
    data["rows"] = {p: r + 1 for p, r in data["rows"].items()}
    torch.save(data, path)
    again = RunText.prepare(cfg, prompts, DistEnv(), path)      # not this encoder's: encoded anew
    assert torch.equal(again.contexts(prompts), main.contexts(prompts))
    assert torch.load(path, weights_only=True)["source"] == main.source
