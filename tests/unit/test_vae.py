"""LeanVAE: shapes, sizes, exact streaming, causality, the wavelet folding, the published key map."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from instantvir_cli.errors import CheckpointError
from instantvir_cli.models.leanvae_keys import (
    leanvae_state_dict_from_published,
    load_published_leanvae,
    vae_config_from_published_args,
)
from instantvir_cli.models.vae import (
    VAE_PRESETS,
    LeanVAE,
    VAEConfig,
    VAEStreamState,
    haar_dwt,
    haar_idwt,
    kl_divergence,
    vae_config,
)
from instantvir_cli.models.wavelet import patchify

TINY = VAE_PRESETS["tiny"]
# the compressions a config can express: 4x8x8 (published), 4x4x4, 2x8x8
CONFIGS = {"4x8x8": TINY,
           "4x4x4": dataclasses.replace(TINY, patch_hw=2),
           "2x8x8": dataclasses.replace(TINY, patch_t=1, depth_fusion=2, ista_depth=2)}


def _model(cfg: VAEConfig = TINY, seed: int = 0) -> LeanVAE:
    torch.manual_seed(seed)
    vae = LeanVAE(cfg).eval()
    with torch.no_grad():  # non-trivial norms and ISTA scalars, so every parameter matters
        for name, p in vae.named_parameters():
            if p.ndim <= 1:
                p.add_(0.1 * torch.randn_like(p))
    return vae


def _clip(T: int, H: int = 16, W: int = 24, B: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.rand(B, 3, T, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _param_count(cfg: VAEConfig) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in LeanVAE(cfg).parameters())


# ----------------------------------------------------------------------------- sizes and shapes

def test_lean16_has_the_published_parameter_count():
    assert _param_count(VAE_PRESETS["lean16"]) == 39_785_940  # README: 39.8 M
    assert _param_count(VAE_PRESETS["lean4"]) == 39_767_496
    assert VAE_PRESETS["lean16"].pixel_scale == 0.5  # the published weights take [-0.5, 0.5]


def test_presets_are_ordered_by_size():
    n = {name: _param_count(cfg) for name, cfg in VAE_PRESETS.items()}
    assert n["tiny"] < n["xsmall"] < n["small"] < n["base"] < n["lean4"] / 10
    assert vae_config("small", latent_channels=32).latent_channels == 32
    with pytest.raises(ValueError, match="unknown VAE preset 'huge'.*lean16"):
        vae_config("huge")
    with pytest.raises(ValueError, match="patch_hw"):
        VAEConfig(patch_hw=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_shapes(name):
    cfg = CONFIGS[name]
    vae = _model(cfg)
    T = 1 + 2 * cfg.time_factor
    x = _clip(T)
    z = vae.encode(x)
    assert z.shape == (2,) + cfg.latent_shape(T, 16, 24)
    assert z.shape == (2, 4, 3, 16 // cfg.space_factor, 24 // cfg.space_factor)
    assert vae.decode(z).shape == x.shape
    mean, logvar = vae.encode_dist(x)
    assert torch.equal(mean, z) and logvar.shape == z.shape
    assert vae.decode(z[:, :, :1]).shape == (2, 3, 1, 16, 24)  # a single image
    assert vae.encode(x[:, :, :1]).shape == (2, 4, 1, 16 // cfg.space_factor, 24 // cfg.space_factor)


def test_bad_inputs_raise_clear_errors():
    vae = _model()
    with pytest.raises(ValueError, match="multiples of 8.*12x24"):
        vae.encode(_clip(5, H=12))
    with pytest.raises(ValueError, match="1 \\+ 4k frames, got 4"):
        vae.encode(_clip(4))
    with pytest.raises(ValueError, match="expected pixels"):
        vae.encode(torch.zeros(1, 1, 5, 16, 16))
    with pytest.raises(ValueError, match="expected latents"):
        vae.decode(torch.zeros(1, 16, 2, 2, 2))
    x, state = _clip(9), VAEStreamState()
    z0 = vae.encode_stream(x[:, :, :5], state)
    with pytest.raises(ValueError, match="positive multiple of 4 frames, got 3"):
        vae.encode_stream(_clip(3), state)
    with pytest.raises(ValueError, match="\\(2, 3, 3\\) does not continue a stream of \\(2, 2, 3\\)"):
        vae.encode_stream(_clip(4, H=24), state)
    with pytest.raises(ValueError, match="encode stream, not decode"):
        vae.decode_stream(torch.zeros(2, 4, 1, 2, 3), state)
    # a refused chunk leaves the stream intact
    assert torch.equal(torch.cat([z0, vae.encode_stream(x[:, :, 5:], state)], dim=2), vae.encode(x))


# ----------------------------------------------------------------------------- streaming

@pytest.mark.parametrize("name", list(CONFIGS))
def test_stream_encode_equals_full_pass_bit_for_bit(name):
    cfg = CONFIGS[name]
    vae, k = _model(cfg), cfg.time_factor
    x = _clip(1 + 4 * k)
    with torch.no_grad():
        z = vae.encode(x)
        for chunks in ([1, k, k, k, k], [1 + k, 2 * k, k], [1, 4 * k], [1 + 3 * k, k]):
            state, zs, start = VAEStreamState(), [], 0
            for n in chunks:
                zs.append(vae.encode_stream(x[:, :, start:start + n], state))
                start += n
            assert torch.equal(torch.cat(zs, dim=2), z), chunks
            assert state.frames == x.shape[2] and not state.first


@pytest.mark.parametrize("name", list(CONFIGS))
def test_stream_decode_equals_full_pass_bit_for_bit(name):
    vae = _model(CONFIGS[name])
    z = torch.randn(2, 4, 7, 3, 2, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        x = vae.decode(z)
        for blocks in ([3, 3, 1], [1, 3, 3], [1] * 7, [2, 5]):
            state, xs, start = VAEStreamState(), [], 0
            for n in blocks:
                xs.append(vae.decode_stream(z[:, :, start:start + n], state))
                start += n
            assert torch.equal(torch.cat(xs, dim=2), x), blocks
    assert state.frames == 7 and 0 < state.nbytes


@pytest.mark.parametrize("name", list(CONFIGS))
def test_inference_ring_cache_matches_the_training_path(name):
    # without gradients the temporal convs keep a 3-slot ring and rotate their taps; with them
    # they concatenate: the same sums, so equal to rounding, over more frames than the ring holds
    vae, k = _model(CONFIGS[name]), CONFIGS[name].time_factor
    x = _clip(1 + 6 * k)
    with torch.enable_grad():
        z_train = vae.encode(x).detach()
        x_train = vae.decode(z_train).detach()
    with torch.no_grad():
        z_ring, x_ring = vae.encode(x), vae.decode(z_train)
    assert (z_ring - z_train).abs().max() < 1e-5
    assert (x_ring - x_train).abs().max() < 1e-5


def test_a_stream_may_switch_between_the_ring_and_the_concatenating_cache():
    vae = _model()
    z = torch.randn(2, 4, 6, 3, 2, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = vae.decode(z)
    state, xs = VAEStreamState(), []
    for start, grad in ((0, False), (2, True), (3, False), (5, True)):
        stop = {0: 2, 2: 3, 3: 5, 5: 6}[start]
        with torch.set_grad_enabled(grad):
            xs.append(vae.decode_stream(z[:, :, start:stop], state).detach())
    assert (torch.cat(xs, 2) - whole).abs().max() < 1e-5


@pytest.mark.parametrize("name", list(CONFIGS))
def test_difference_decode_equals_the_difference_of_two_streams(name):
    vae = _model(CONFIGS[name])
    g = torch.Generator().manual_seed(4)
    za, zb = torch.randn(1, 4, 7, 3, 2, generator=g), torch.randn(1, 4, 7, 3, 2, generator=g)
    with torch.no_grad():
        xa, xb = vae.decode(torch.cat([za, zb])).chunk(2)
        s_pair, s_diff, parts = VAEStreamState(), VAEStreamState(), []
        for start, stop in ((0, 3), (3, 6), (6, 7)):
            d = vae.decode_difference_stream(za[:, :, start:stop], zb[:, :, start:stop], s_diff)
            a, b = vae.decode_stream(torch.cat([za[:, :, start:stop], zb[:, :, start:stop]]), s_pair).chunk(2)
            assert (d - (a - b)).abs().max() < 1e-5
            parts.append(d)
    assert (torch.cat(parts, 2) - (xa - xb)).abs().max() < 1e-5
    assert (xa - xb).abs().max() > 0.01         # the streams differ: the check is not of zeros
    with pytest.raises(ValueError, match="even batch"):
        vae._decode(torch.randn(3, 4, 1, 3, 2), VAEStreamState(), difference=True)


def test_encoding_and_decoding_are_causal():
    vae = _model()
    x = _clip(13)
    x2 = x.clone()
    x2[:, :, 9] += 1.0  # frame 9 belongs to latent frame 3 (frames 9..12)
    with torch.no_grad():
        z, z2 = vae.encode(x), vae.encode(x2)
        assert torch.equal(z[:, :, :3], z2[:, :, :3])
        assert not torch.equal(z[:, :, 3], z2[:, :, 3])
        zb = z.clone()
        zb[:, :, 2] += 1.0  # latent 2 decodes to frames 5..8
        xa, xb = vae.decode(z), vae.decode(zb)
    assert torch.equal(xa[:, :, :5], xb[:, :, :5])
    assert not torch.equal(xa[:, :, 5:9], xb[:, :, 5:9])


# ----------------------------------------------------------------------------- wavelet, scale, training

def test_haar_is_invertible_and_its_first_band_is_the_block_sum():
    x = torch.randn(2, 3, 4, 8, 6, dtype=torch.float64)
    for dims in [(4, 3), (2, 3, 4)]:
        b = haar_dwt(x, dims)
        assert b.shape[1] == 3 * 2 ** len(dims)
        torch.testing.assert_close(haar_idwt(b, dims), x)
    torch.testing.assert_close(haar_dwt(x, (2, 3, 4))[:, :3], 8 * F.avg_pool3d(x, 2))


@pytest.mark.parametrize("name", ["4x8x8", "4x4x4"])
def test_folded_front_end_equals_wavelet_then_patch_linears(name):
    """The encoder applies DWT + patch linears as one map; check it against the explicit path,
    and the decoder's head against the linears then the inverse DWT."""
    cfg = dataclasses.replace(CONFIGS[name], pixel_scale=0.5)
    vae, C, pt, p = _model(cfg), 3, cfg.patch_t, cfg.patch_hw
    x = _clip(5, H=16, W=32).double()
    vae.double()
    for embed, frames, dims, t in [(vae.encoder.embed_image, x[:, :, :1], (4, 3), 1),
                                   (vae.encoder.embed_video, x[:, :, 1:], (2, 3, 4), pt)]:
        b = haar_dwt(frames * 0.5, dims)
        lo, hi = embed.embed(frames, 0.5)
        torch.testing.assert_close(lo, embed.low(patchify(b[:, :C], t, p)))
        torch.testing.assert_close(hi, embed.high(patchify(b[:, C:], t, p)))
    for head, dims, t, nb in [(vae.decoder.head_image, (4, 3), 1, 4),
                              (vae.decoder.head_video, (2, 3, 4), pt, 8)]:
        h = torch.randn(2, 2, 2, 4, cfg.dim, dtype=torch.float64)           # (B, t, h, w, D)
        out = torch.empty(2, C, 2 * head.tp, 2 * head.sp, 4 * head.sp, dtype=torch.float64)
        head.unembed_into(out, h, 0.5)
        lo = head.low(h[..., :cfg.dim_low]).view(2, 2, 2, 4, C, t, p, p)
        hi = head.high(h[..., cfg.dim_low:]).view(2, 2, 2, 4, (nb - 1) * C, t, p, p)
        bands = torch.cat([lo, hi], dim=4).permute(0, 4, 1, 5, 2, 6, 3, 7)  # (B, nb*C, t, pt, h, p, w, p)
        bands = bands.reshape(2, nb * C, 2 * t, 2 * p, 4 * p)
        torch.testing.assert_close(out, haar_idwt(bands, dims) / 0.5)


def test_pixel_scale_is_applied_once_at_each_end():
    half = _model(dataclasses.replace(TINY, pixel_scale=0.5)).double()
    one = LeanVAE(TINY).double()
    one.load_state_dict(half.state_dict())
    x = _clip(5).double()
    with torch.no_grad():
        torch.testing.assert_close(half.encode(x), one.encode(0.5 * x))
        z = half.encode(x)
        torch.testing.assert_close(half.decode(z), one.decode(z) / 0.5)


def test_forward_samples_the_posterior_and_trains():
    vae = _model().train()
    x = _clip(5)
    g = torch.Generator().manual_seed(0)
    x_rec, mean, logvar = vae(x, generator=g)
    loss = (x_rec - x).abs().mean() + 1e-7 * kl_divergence(mean, logvar).mean()
    loss.backward()
    assert kl_divergence(mean, logvar).shape == (2,)
    assert all(p.grad is not None for p in vae.parameters())
    x_det, _, _ = vae(x, sample=False)
    assert torch.equal(x_det, vae.decode(vae.encode(x)))


# ----------------------------------------------------------------------------- the published checkpoint

def _published_layout(latent=16, l_dim=128, h_dim=384, sep=2, fusion=4, iters=2, layers=2):
    """Key -> shape of the published `LeanVAE` state dict (westlake-repl/LeanVAE, master),
    generated from its args; patch 2x4x4, 3 colour channels."""
    D, shapes = l_dim + h_dim, {}

    def naf(prefix, dim, n):
        hid = int(4 * (2 / 3) * dim)
        for i in range(n):
            shapes[f"{prefix}.dconv_layer.{i}.ds_conv.weight"] = (dim, 1, 3, 3, 3)
            shapes[f"{prefix}.dconv_layer.{i}.ds_conv.bias"] = (dim,)
            shapes[f"{prefix}.ffd_layer.{i}.0.weight"] = (dim,)
            shapes[f"{prefix}.ffd_layer.{i}.0.bias"] = (dim,)
            shapes[f"{prefix}.ffd_layer.{i}.1.weight"] = (2 * hid, dim)
            shapes[f"{prefix}.ffd_layer.{i}.4.weight"] = (dim, hid)

    patch = {"image_low": (48, l_dim), "image_high": (144, h_dim),
             "video_low": (96, l_dim), "video_high": (672, h_dim)}
    for kind, (n_in, n_out) in patch.items():
        shapes[f"encoder.{kind}_proj.1.weight"] = (n_out, n_in)
        shapes[f"encoder.{kind}_proj.1.bias"] = (n_out,)
        shapes[f"decoder.{kind}_proj.0.weight"] = (n_in, n_out)
        shapes[f"decoder.{kind}_proj.0.bias"] = (n_in,)
    for part in ("encoder", "decoder"):
        naf(f"{part}.low_layer", l_dim, sep)
        naf(f"{part}.high_layer", h_dim, sep)
        naf(f"{part}.fusion_layer", D, fusion)
    shapes["latent_bottleneck.phi"] = (latent, D)
    shapes["latent_bottleneck.Q"] = (D, latent)
    for i in range(iters):
        naf(f"latent_bottleneck.forward_l.{i}", D, layers)
        naf(f"latent_bottleneck.backward_l.{i}", D, layers)
        shapes[f"latent_bottleneck.weights.{i}"] = ()
        shapes[f"latent_bottleneck.threshold.{i}"] = (1,)
    shapes["std_layer.weight"] = (latent, D)
    shapes["std_layer.bias"] = (latent,)
    return shapes


TINY_ARGS = dict(embedding_dim=24, latent_dim=4, l_dim=8, h_dim=16, sep_num_layer=1,
                 fusion_num_layer=1, ista_iter_num=1, ista_layer_num=1)


def _random_published(args=TINY_ARGS, seed=0):
    layout = _published_layout(args["latent_dim"], args["l_dim"], args["h_dim"], args["sep_num_layer"],
                               args["fusion_num_layer"], args["ista_iter_num"], args["ista_layer_num"])
    g = torch.Generator().manual_seed(seed)
    return {k: 0.1 * torch.randn(s, generator=g) for k, s in layout.items()}


def test_the_published_layout_counts_39_8M():
    assert sum(torch.Size(s).numel() for s in _published_layout().values()) == 39_785_940


def test_published_args_give_the_preset():
    args = dict(embedding_dim=512, latent_dim=16, ista_iter_num=2, ista_layer_num=2, l_dim=128,
                h_dim=384, sep_num_layer=2, fusion_num_layer=4, use_tile_inference=False)
    assert vae_config_from_published_args(args) == VAE_PRESETS["lean16"]
    assert vae_config_from_published_args({**args, "latent_dim": 4}) == VAE_PRESETS["lean4"]


@pytest.mark.parametrize("prefix", ["", "autoencoder."])
def test_key_map_loads_a_random_published_state_dict_exactly(prefix):
    cfg = vae_config_from_published_args(TINY_ARGS)
    sd = {prefix + k: v for k, v in _random_published().items()}
    if prefix:  # a Lightning training checkpoint also holds its loss networks
        sd["perceptual_model.net.slice1.0.weight"] = torch.zeros(1)
        sd["gan_loss.discriminator.main.0.weight"] = torch.zeros(1)
    ours = leanvae_state_dict_from_published(sd, cfg)
    vae = LeanVAE(cfg)
    vae.load_state_dict(ours, strict=True)
    assert len(ours) == len(_published_layout(4, 8, 16, 1, 1, 1, 1)) == len(vae.state_dict())
    # the tensors land where they belong
    assert torch.equal(vae.encoder.embed_video.high.weight, sd[prefix + "encoder.video_high_proj.1.weight"])
    assert torch.equal(vae.decoder.head_image.low.bias, sd[prefix + "decoder.image_low_proj.0.bias"])
    assert torch.equal(vae.bottleneck.steps[0].analysis.blocks[0].fc2.weight,
                       sd[prefix + "latent_bottleneck.forward_l.0.ffd_layer.0.4.weight"])
    assert torch.equal(vae.bottleneck.steps[0].step_size, sd[prefix + "latent_bottleneck.weights.0"])
    assert torch.equal(vae.logvar.bias, sd[prefix + "std_layer.bias"])


def test_key_map_names_every_bad_key():
    cfg = vae_config_from_published_args(TINY_ARGS)
    sd = _random_published()
    del sd["decoder.fusion_layer.ffd_layer.0.1.weight"]
    sd["latent_bottleneck.etas.0"] = torch.zeros(1)
    sd["encoder.low_layer.ffd_layer.0.2.weight"] = torch.zeros(1)
    sd["latent_bottleneck.Q"] = torch.zeros(24, 5)
    with pytest.raises(CheckpointError) as e:
        leanvae_state_dict_from_published(sd, cfg)
    msg = str(e.value)
    for key in ["unexpected key 'latent_bottleneck.etas.0'",
                "unexpected key 'encoder.low_layer.ffd_layer.0.2.weight'",
                "missing key 'decoder.fusion.blocks.0.fc1.weight'",
                "shape of 'bottleneck.Q': checkpoint (24, 5), model (24, 4)"]:
        assert key in msg
    with pytest.raises(CheckpointError, match="etas"):  # without a config: unmappable keys only
        leanvae_state_dict_from_published(sd)


def test_load_published_checkpoint_file(tmp_path):
    path = tmp_path / "LeanVAE-tiny.ckpt"
    sd = _random_published()
    torch.save({"args": {**TINY_ARGS, "use_tile_inference": False}, "state_dict": sd}, path)
    vae = load_published_leanvae(str(path))
    assert vae.cfg.pixel_scale == 0.5 and not vae.training
    assert torch.equal(vae.bottleneck.phi, sd["latent_bottleneck.phi"])
    assert vae.encode(_clip(5)).shape == (2, 4, 2, 2, 3)
    with pytest.raises(CheckpointError, match="not found"):
        load_published_leanvae(str(tmp_path / "missing.ckpt"))
