"""Presets, checkpoint files, strict loading, checkpoint lookup, and Wan2.1 key maps."""

from __future__ import annotations

import importlib.resources
import json
import os
import pickle
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from instantvir_cli.errors import CheckpointError, ConfigError
from instantvir_cli.models.checkpoint import (
    FORMAT,
    load_checkpoint,
    make_header,
    read_header,
    save_checkpoint,
)
from instantvir_cli.models.dit import DIT_PRESETS, DiT, DiTConfig
from instantvir_cli.models.foreign import load_state_dict_file
from instantvir_cli.models.layers import timestep_embedding
from instantvir_cli.models.lookup import (
    ENV_CHECKPOINT,
    find_checkpoint,
    user_checkpoint_dir,
)
from instantvir_cli.models.presets import (
    build_dit,
    config_from_dict,
    config_to_dict,
    dit_config,
    preset_param_counts,
)
from instantvir_cli.models.strict import load_module_state
from instantvir_cli.models.student import CausalStudent, StudentConfig
from instantvir_cli.models.wan_keys import (
    convert_wan_state_dict,
    detect_wan_layout,
    load_wan_dit,
    to_wan_state_dict,
    wan_config_from_state_dict,
    wan_key,
)

TINY = replace(DIT_PRESETS["tiny"], in_channels=4, out_channels=4)

# ----------------------------------------------------------------- presets, configs


def test_preset_lookup_and_counts():
    assert dit_config("tiny") is DIT_PRESETS["tiny"]
    with pytest.raises(ConfigError, match="unknown DiT preset 'huge'.*tiny"):
        dit_config("huge")
    counts = preset_param_counts()
    assert counts["wan2.1-1.3b"] == 1_418_996_800
    assert counts["tiny"] < counts["small"] < counts["base"] < counts["wan2.1-1.3b"]
    assert counts["xsmall-p4"] < counts["small-p4"]
    assert build_dit("tiny", "meta").patch_embed.weight.is_meta


def test_config_dict_roundtrip_rejects_unknown_keys():
    d = config_to_dict(DIT_PRESETS["wan2.1-1.3b"])
    assert d["patch"] == [1, 2, 2] and json.loads(json.dumps(d)) == d
    assert config_from_dict(DiTConfig, d) == DIT_PRESETS["wan2.1-1.3b"]
    assert dit_config(d) == DIT_PRESETS["wan2.1-1.3b"]
    with pytest.raises(ConfigError, match="unknown DiTConfig keys: widht"):
        config_from_dict(DiTConfig, {**d, "widht": 3})
    with pytest.raises(ConfigError, match="invalid DiTConfig"):
        config_from_dict(DiTConfig, {**d, "heads": 7})


# ------------------------------------------------------------------ checkpoint files


def header_for(cfg=TINY):
    return make_header(
        dit=cfg, dit_preset="tiny", student=StudentConfig(), task="inpaint",
        operator={"task": "inpaint", "seed": 0}, t_star=522.0, provenance={"steps": 0},
    )


def test_save_load_roundtrip(tmp_path):
    model = CausalStudent(TINY)
    extra = {"w": torch.arange(6.0).view(2, 3)}
    path = save_checkpoint(tmp_path / "sub" / "m.safetensors", {"student": model.state_dict(), "vae": extra}, header_for())
    assert path.is_file() and list(path.parent.iterdir()) == [path]       # no temp file left behind
    ck = load_checkpoint(path)
    h = ck.header
    assert h["format"] == FORMAT and h["task"] == "inpaint" and h["t_star"] == 522.0
    assert h["dit"] == config_to_dict(TINY) and h["student"]["block_frames"] == 3
    assert h["modules"]["vae"] == {"tensors": 1, "params": 6} and "created" in h and "vir_version" in h
    assert read_header(path) == h
    assert torch.equal(ck.state_dict("vae")["w"], extra["w"])
    rebuilt = load_module_state(CausalStudent(dit_config(h["dit"])), ck.state_dict("student"), "student")
    for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="no module 'critic'"):
        ck.state_dict("critic")


def test_meta_model_gets_weights_assigned(tmp_path):
    src = DiT(TINY)
    meta = build_dit(TINY, "meta")
    load_module_state(meta, src.state_dict())
    assert not any(p.is_meta for p in meta.parameters())


def test_save_is_atomic(tmp_path):
    path = tmp_path / "m.safetensors"
    save_checkpoint(path, {"a": {"x": torch.zeros(2)}}, {"task": "sr4x"})
    before = path.read_bytes()
    with pytest.raises(ValueError, match="JSON"):
        save_checkpoint(path, {"a": {"x": torch.ones(2)}}, {"bad": object()})
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]
    save_checkpoint(path, {"a": {"x": torch.ones(2)}}, {"task": "deblur"})  # overwrite in place
    assert read_header(path)["task"] == "deblur"


def test_strict_loading_names_every_problem():
    model = DiT(TINY)
    sd = model.state_dict()
    broken = dict(sd)
    del broken["blocks.1.attn.q.weight"]
    broken["blocks.9.extra"] = torch.zeros(1)
    broken["final.linear.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointError) as err:
        load_module_state(model, broken, "student")
    msg = str(err.value)
    assert "missing keys (1): blocks.1.attn.q.weight" in msg
    assert "unexpected keys (1): blocks.9.extra" in msg
    assert "final.linear.bias: checkpoint (3,) vs model (16,)" in msg
    assert msg.startswith("student weights do not fit")


def test_bad_files_raise_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "none.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(junk)
    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(1)}, str(foreign))
    with pytest.raises(CheckpointError, match="without a vir header"):
        load_checkpoint(foreign)
    assert set(load_state_dict_file(foreign)) == {"x"}                   # fine as foreign weights
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other), metadata={"vir": json.dumps({"format": "someone-else/9"})})
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        read_header(other)


class _Exploit:
    """Unpickling this would create `marker` (stand-in for arbitrary code execution)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("suffix", [".pt", ".ckpt", ".pth"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, suffix):
    marker = tmp_path / "pwned"
    evil = tmp_path / f"evil{suffix}"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": _Exploit(marker)}, evil)
    raw = tmp_path / f"raw{suffix}"
    raw.write_bytes(pickle.dumps(_Exploit(marker)))
    for path in (evil, raw):
        with pytest.raises(CheckpointError, match="refused to load: a pickled checkpoint may hold only tensors"):
            load_state_dict_file(path)
    assert not marker.exists()


def test_plain_pickled_state_dicts_load(tmp_path):
    sd = {"a": torch.ones(2), "b": torch.zeros(3)}
    torch.save(sd, tmp_path / "flat.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "nested.ckpt")
    torch.save({"generator": {"model.a": sd["a"], "model.b": sd["b"]}}, tmp_path / "causvid.pt")
    for name in ("flat.pt", "nested.ckpt"):
        out = load_state_dict_file(tmp_path / name)
        assert out.keys() == sd.keys() and torch.equal(out["a"], sd["a"])
    assert set(load_state_dict_file(tmp_path / "causvid.pt")) == {"model.a", "model.b"}
    (tmp_path / "x.npz").write_bytes(b"0")
    with pytest.raises(CheckpointError, match="unknown weights format"):
        load_state_dict_file(tmp_path / "x.npz")


def test_sharded_safetensors_index(tmp_path):
    from safetensors.torch import save_file

    save_file({"a": torch.ones(1)}, str(tmp_path / "m-1.safetensors"))
    save_file({"b": torch.ones(2)}, str(tmp_path / "m-2.safetensors"))
    index = {"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}
    (tmp_path / "m.safetensors.index.json").write_text(json.dumps(index))
    assert set(load_state_dict_file(tmp_path)) == {"a", "b"}


# ---------------------------------------------------------------- checkpoint lookup


@pytest.fixture
def lookup_env(tmp_path, monkeypatch):
    """Empty user data folder and package folder under tmp_path; no $VIR_CHECKPOINT."""
    monkeypatch.delenv(ENV_CHECKPOINT, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    pkg = tmp_path / "pkg"
    (pkg / "weights").mkdir(parents=True)
    real_files = importlib.resources.files
    monkeypatch.setattr(importlib.resources, "files", lambda name: pkg if name == "instantvir_cli" else real_files(name))
    return tmp_path


def touch(path: Path, mtime: float | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_find_checkpoint_order(lookup_env, monkeypatch):
    tmp = lookup_env
    with pytest.raises(CheckpointError) as err:
        find_checkpoint(None)
    msg = str(err.value)
    for place in ("--checkpoint", "$VIR_CHECKPOINT", str(tmp / "xdg" / "vir" / "checkpoints"), "instantvir_cli/weights"):
        assert place in msg

    pkg = touch(tmp / "pkg" / "weights" / "default.safetensors")
    assert find_checkpoint(None) == pkg
    user_dir = user_checkpoint_dir()
    assert user_dir == tmp / "xdg" / "vir" / "checkpoints"
    now = time.time()
    old = touch(user_dir / "old.safetensors", now - 100)
    new = touch(user_dir / "new.safetensors", now)
    assert find_checkpoint(None) == new                                  # newest in the user folder
    os.utime(old, (now + 50, now + 50))
    assert find_checkpoint(None) == old
    default = touch(user_dir / "default.safetensors", now - 1000)
    assert find_checkpoint(None) == default                              # default.safetensors wins
    env = touch(tmp / "env.safetensors")
    monkeypatch.setenv(ENV_CHECKPOINT, str(env))
    assert find_checkpoint(None) == env
    explicit = touch(tmp / "explicit.safetensors")
    assert find_checkpoint(explicit) == explicit
    assert find_checkpoint(user_dir) == default                          # a folder is searched
    with pytest.raises(CheckpointError, match="given with --checkpoint"):
        find_checkpoint(tmp / "missing.safetensors")
    monkeypatch.setenv(ENV_CHECKPOINT, str(tmp / "gone.safetensors"))
    with pytest.raises(CheckpointError, match=r"from \$VIR_CHECKPOINT"):
        find_checkpoint(None)


def test_home_fallback(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_checkpoint_dir() == tmp_path / ".local" / "share" / "vir" / "checkpoints"


# ------------------------------------------------------------------ Wan2.1 key maps

# Wan2.1 `WanModel` (t2v) parameters as read from wan/modules/model.py: name -> shape, with
# D dim, F ffn_dim, X text_dim, Q freq_dim, I in_dim, P = out_dim * prod(patch).
WAN_ORIGINAL_LAYOUT = """
patch_embedding.weight D,I,1,2,2 | patch_embedding.bias D
text_embedding.0.weight D,X | text_embedding.0.bias D | text_embedding.2.weight D,D | text_embedding.2.bias D
time_embedding.0.weight D,Q | time_embedding.0.bias D | time_embedding.2.weight D,D | time_embedding.2.bias D
time_projection.1.weight 6D,D | time_projection.1.bias 6D
blocks.#.self_attn.{q,k,v,o}.weight D,D | blocks.#.self_attn.{q,k,v,o}.bias D
blocks.#.self_attn.norm_{q,k}.weight D | blocks.#.norm3.{weight,bias} D
blocks.#.cross_attn.{q,k,v,o}.weight D,D | blocks.#.cross_attn.{q,k,v,o}.bias D
blocks.#.cross_attn.norm_{q,k}.weight D
blocks.#.ffn.0.weight F,D | blocks.#.ffn.0.bias F | blocks.#.ffn.2.weight D,F | blocks.#.ffn.2.bias D
blocks.#.modulation 1,6,D | head.head.weight P,D | head.head.bias P | head.modulation 1,2,D
"""


def wan_original_state_dict(dim, ffn, text_dim, freq_dim, cin, cout, depth, seed=0):
    """A random state dict with Wan2.1's original names and shapes (from the description above)."""
    sizes = {"D": dim, "F": ffn, "X": text_dim, "Q": freq_dim, "I": cin, "P": cout * 4, "6D": 6 * dim}
    g = torch.Generator().manual_seed(seed)
    out = {}
    for entry in WAN_ORIGINAL_LAYOUT.replace("\n", "|").split("|"):
        if not entry.strip():
            continue
        name, shape = entry.split()
        names = [name]
        while any("{" in n for n in names):                                # expand {a,b} alternatives
            n = next(n for n in names if "{" in n)
            head, rest = n.split("{", 1)
            alts, tail = rest.split("}", 1)
            names = [m for m in names if m != n] + [head + a + tail for a in alts.split(",")]
        names = [n.replace("#", str(i)) for n in names for i in range(depth)] if "#" in name else names
        dims = tuple(sizes[d] if d in sizes else int(d) for d in shape.split(","))
        for n in sorted(set(names)):
            out[n] = torch.randn(dims, generator=g) * 0.3
    return out


# diffusers' own tiny test config (tests/models/transformers/test_models_transformer_wan.py)
DIFFUSERS_TINY = {
    "patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 4,
    "out_channels": 4, "text_dim": 16, "freq_dim": 256, "ffn_dim": 32, "num_layers": 2,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "rope_max_seq_len": 32,
}


def diffusers_reference(sd=None):
    """diffusers' WanTransformer3DModel with Wan's float64 timestep sinusoid.

    diffusers computes the sinusoid in float32; Wan2.1's own code (which trained the released
    weights) in float64, which we follow. The two differ by <= 4e-5 in the embedding; swapping in
    the float64 sinusoid makes the comparison test the transformer and the key map exactly.
    """
    import diffusers  # a test dependency: missing, the tests fail rather than skip

    torch.manual_seed(0)
    ref = diffusers.WanTransformer3DModel(**DIFFUSERS_TINY).eval()
    if sd is None:
        with torch.no_grad():
            for p in ref.parameters():
                p.normal_(0, 0.3)
    else:
        ref.load_state_dict(sd, strict=True)
    fp32 = ref.condition_embedder.timesteps_proj

    class Float64Sinusoid(torch.nn.Module):
        def forward(self, t):
            return timestep_embedding(t, 256).float()

    ref.condition_embedder.timesteps_proj = Float64Sinusoid()
    return ref, fp32


def test_diffusers_layout_matches_diffusers_model():
    ref, fp32_sinusoid = diffusers_reference()
    sd = ref.state_dict()
    assert detect_wan_layout(sd) == "diffusers"
    cfg = wan_config_from_state_dict(sd, heads=2)
    assert (cfg.dim, cfg.depth, cfg.heads, cfg.ffn_dim, cfg.text_dim, cfg.in_channels) == (24, 2, 2, 32, 16, 4)
    ours = load_module_state(build_dit(cfg, "meta"), convert_wan_state_dict(sd, cfg)).eval()
    g = torch.Generator().manual_seed(1)
    z, ctx = torch.randn(2, 4, 3, 16, 16, generator=g), torch.randn(2, 12, 16, generator=g)
    t = torch.tensor([999.0, 347.5])
    with torch.no_grad():
        want = ref(z, t, ctx, return_dict=False)[0]
        got = ours(z, t, ctx)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        # per-frame timesteps: diffusers takes one per token (B, L)
        tf = torch.tensor([[100.0, 500.0, 900.0], [50.0, 50.0, 700.0]])
        want = ref(z, tf.repeat_interleave(64, dim=1), ctx, return_dict=False)[0]
        torch.testing.assert_close(ours(z, tf, ctx), want, atol=1e-5, rtol=1e-5)
        # diffusers' own float32 sinusoid: same up to its rounding
        ref.condition_embedder.timesteps_proj = fp32_sinusoid
        want = ref(z, t, ctx, return_dict=False)[0]
    torch.testing.assert_close(got, want, atol=2e-3, rtol=1e-4)
    assert (timestep_embedding(t, 256).float() - fp32_sinusoid(t)).abs().max() < 1e-4
    back = to_wan_state_dict(ours.state_dict(), "diffusers")
    assert back.keys() == sd.keys()


def test_original_layout_roundtrip_against_diffusers():
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    orig = wan_original_state_dict(dim=24, ffn=32, text_dim=16, freq_dim=256, cin=4, cout=4, depth=2)
    comfy = {f"model.diffusion_model.{k}": v for k, v in orig.items()}
    assert detect_wan_layout(orig) == "original"
    cfg = wan_config_from_state_dict(comfy, heads=2)
    ours = load_module_state(build_dit(cfg, "meta"), convert_wan_state_dict(comfy, cfg)).eval()
    assert to_wan_state_dict(ours.state_dict(), "original").keys() == orig.keys()
    # the same original weights through diffusers' own converter into diffusers' model
    ref, _ = diffusers_reference(convert_wan_transformer_to_diffusers(dict(orig)))
    g = torch.Generator().manual_seed(2)
    z, ctx = torch.randn(1, 4, 2, 8, 12, generator=g), torch.randn(1, 9, 16, generator=g)
    with torch.no_grad():
        want = ref(z, torch.tensor([522.0]), ctx, return_dict=False)[0]
        torch.testing.assert_close(ours(z, torch.tensor([522.0]), ctx), want, atol=1e-5, rtol=1e-5)


def test_wan_maps_are_strict_and_name_wan_keys():
    orig = wan_original_state_dict(dim=24, ffn=32, text_dim=16, freq_dim=256, cin=4, cout=4, depth=2)
    cfg = wan_config_from_state_dict(orig, heads=2)
    bad = dict(orig)
    del bad["blocks.1.norm3.bias"]
    bad["blocks.0.cross_attn.k_img.weight"] = torch.zeros(24, 24)
    bad["head.modulation"] = torch.zeros(1, 3, 24)
    with pytest.raises(CheckpointError) as err:
        convert_wan_state_dict(bad, cfg)
    msg = str(err.value)
    assert "missing keys (1): blocks.1.norm3.bias" in msg
    assert "unexpected keys (1): blocks.0.cross_attn.k_img.weight" in msg
    assert "head.modulation: checkpoint (1, 3, 24) vs model (1, 2, 24)" in msg
    with pytest.raises(CheckpointError, match="not a Wan2.1"):
        detect_wan_layout({"x": torch.zeros(1)})
    no_text = replace(cfg, text_dim=0)                                     # our model can't take text keys
    with pytest.raises(CheckpointError, match="unexpected keys"):
        convert_wan_state_dict(orig, no_text)


def test_load_wan_dit_from_file(tmp_path):
    from safetensors.torch import save_file

    orig = wan_original_state_dict(dim=24, ffn=32, text_dim=16, freq_dim=256, cin=4, cout=4, depth=2)
    save_file(orig, str(tmp_path / "wan.safetensors"))
    torch.save(orig, tmp_path / "wan.pth")
    a = load_wan_dit(tmp_path / "wan.safetensors", heads=2)
    b = load_wan_dit(tmp_path / "wan.pth", heads=2)
    assert a.config == b.config and a.config.heads == 2
    assert torch.equal(a.blocks[1].cross.norm_k.weight, orig["blocks.1.cross_attn.norm_k.weight"])
    assert torch.equal(b.final.modulation, orig["head.modulation"])


def test_wan_names_of_the_full_size_model():
    sd = build_dit("wan2.1-1.3b", "meta").state_dict()
    orig = {wan_key(k, "original") for k in sd}
    diff = {wan_key(k, "diffusers") for k in sd}
    assert len(orig) == len(diff) == len(sd) == 825
    assert {"blocks.29.ffn.2.bias", "head.modulation", "blocks.0.norm3.weight"} <= orig
    assert {"blocks.29.ffn.net.2.bias", "scale_shift_table", "blocks.0.norm2.weight", "blocks.3.attn1.to_out.0.weight"} <= diff


def test_int8_storage_round_trip_is_close_and_four_times_smaller(tmp_path):
    from instantvir_cli.models.checkpoint import INT8_MIN_NUMEL

    g = torch.Generator().manual_seed(0)
    sd = {"big.weight": torch.randn(64, 256, generator=g), "conv.weight": torch.randn(32, 1, 3, 3, 3, generator=g) * 5,
          "small.weight": torch.randn(4, 4, generator=g), "bias": torch.randn(256, generator=g),
          "steps": torch.tensor([3, 4])}
    header = {"provenance": {"recipe": "test"}}
    full = save_checkpoint(tmp_path / "a.safetensors", {"m": sd}, header)
    small = save_checkpoint(tmp_path / "b.safetensors", {"m": sd}, header, storage="int8")
    assert small.stat().st_size < 0.4 * full.stat().st_size
    ck = load_checkpoint(small)
    assert ck.header["storage"] == "int8" and ck.header["provenance"] == header["provenance"]
    assert set(ck.state_dict("m")) == set(sd)
    for k, v in sd.items():
        w = ck.state_dict("m")[k]
        assert w.dtype == v.dtype and w.shape == v.shape
        if v.is_floating_point() and v.dim() >= 2 and v.numel() >= INT8_MIN_NUMEL:
            step = v.abs().amax(dim=tuple(range(1, v.dim())), keepdim=True) / 127
            assert ((w - v).abs() <= step / 2 + 1e-6).all() and not torch.equal(w, v)
        else:
            assert torch.equal(w, v)


def test_compact_export_restores_like_the_original(tmp_path):
    from instantvir_cli.distill.export import compact_checkpoint
    from instantvir_cli.learned import learned_restorer
    from instantvir_cli.ops import build_operator
    from tests.model_fixtures import save_tiny_checkpoint

    src = save_tiny_checkpoint(tmp_path / "m.safetensors", init="fast", residual=True)
    dst = compact_checkpoint(src, tmp_path / "c.safetensors")
    h0, h1 = read_header(src), read_header(dst)
    assert h1["storage"] == "int8" and h1["tasks"] == h0["tasks"] and h1["vae"] == h0["vae"]
    op = build_operator("sr4x", 32, 48)
    y = op.A(torch.rand(1, 3, 9, 32, 48) * 2 - 1)
    ra, rb = learned_restorer(op, src), learned_restorer(op, dst)
    a = torch.cat([ra.push(y), ra.flush()], 2)
    b = torch.cat([rb.push(y), rb.flush()], 2)
    assert a.shape == b.shape == (1, 3, 9, 32, 48)
    assert float((a - b).abs().max()) < 0.05
