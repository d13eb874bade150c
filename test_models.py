import copy
import json
import os
import re
import warnings

import numpy as np
import pytest
import torch

from conftest import random_unet_weights, vp_alpha_sigma
from interpolants import make_interpolant
from models import (CIFAR10_UNET, MLP, Generator, ResBlock, TimeFlip, UNet, build_model, compile_blocks, group_norm,
                    load_checkpoint_state, load_teacher, save_teacher, timestep_embedding)

SMALL32 = dict(CIFAR10_UNET, num_channels=32, num_res_blocks=1, channel_mult=[1, 2])  # attention at 16x16
SMALL16 = dict(SMALL32, dim=[3, 16, 16], attention_resolutions='8')
SMALL_OVERRIDES = dict(num_channels=32, num_res_blocks=1, channel_mult=[1, 2])  # for foreign checkpoints


pytestmark = pytest.mark.usefixtures('one_thread')


def unet(config, seed=0):
    # a U-Net with every weight perturbed: a fresh one outputs exactly 0 (zero-initialised output conv)
    torch.manual_seed(seed)
    net = build_model(config)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def batch(config, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    t, x = torch.rand(B, generator=g), torch.randn(B, *config['dim'], generator=g)
    y = torch.randint(0, config['num_classes'], (B,), generator=g) if config['num_classes'] else None
    return t, x, y


def sd_with_prefix(net, prefix):
    return {prefix + k: v for k, v in net.state_dict().items()}


@pytest.mark.parametrize('config', [SMALL32, SMALL16], ids=['32x32', '16x16'])
def test_unet_maps_images_to_images(config):
    net = unet(config)
    t, x, _ = batch(config)
    with torch.no_grad():
        out = net(t, x)
        out_scalar_t = net(t[0], x)
    assert out.shape == x.shape
    # exact: a 0-d t is expanded to (B,) before anything is computed from it
    assert torch.equal(out_scalar_t, net(t[0].expand(3), x))


def test_fresh_unet_is_zero_initialised_like_torchcfm():
    net = build_model(SMALL32)
    zeroed = [net.out[-1]] + [m.out_layers[-1] for m in net.modules() if hasattr(m, 'out_layers')] + \
             [m.proj_out for m in net.modules() if hasattr(m, 'proj_out')]
    assert len(zeroed) == 1 + 8 + 4  # output conv, 8 res blocks (2 down, 2 middle, 4 up), 4 attention blocks
    assert all(p.abs().sum() == 0 for m in zeroed for p in m.parameters())
    t, x, _ = batch(SMALL32)
    assert torch.equal(net(t, x), torch.zeros_like(x))  # exact: the last layer is an all-zero conv


def test_class_label_changes_output_and_is_required():
    config = dict(SMALL32, num_classes=10)
    net = unet(config)
    t, x, _ = batch(config)
    with torch.no_grad():
        out0, out1 = net(t, x, torch.zeros(3, dtype=torch.long)), net(t, x, torch.ones(3, dtype=torch.long))
    assert (out0 - out1).abs().max() > 1e-3  # label embeddings of size 0.05 * N(0, 1) move outputs of size ~1
    with pytest.raises(ValueError, match='class-conditional'):
        net(t, x)
    with pytest.raises(ValueError, match='class-conditional'):
        unet(SMALL32)(t, x, torch.zeros(3, dtype=torch.long))


def test_strict_state_dict_load_gives_identical_outputs():
    config = dict(SMALL16, num_classes=10)
    net, fresh = unet(config), build_model(config).eval()
    fresh.load_state_dict(net.state_dict(), strict=True)
    t, x, y = batch(config)
    with torch.no_grad():
        assert torch.equal(fresh(t, x, y), net(t, x, y))  # exact: same weights, same CPU kernels


def test_loader_flips_torchcfm_checkpoint(tmp_path):
    config = dict(SMALL32, num_classes=10)
    v_ema, v_raw = unet(config, seed=0), unet(config, seed=1)
    path = str(tmp_path / 'otcfm_cifar10_weights_step_400000.pt')
    torch.save({'net_model': sd_with_prefix(v_raw, 'module.'), 'ema_model': sd_with_prefix(v_ema, 'module.'),
                'sched': {}, 'optim': {}, 'step': 400000}, path)  # DDP-trained torchcfm: 'module.' keys
    teacher, info = load_teacher(path, **SMALL_OVERRIDES)
    assert (info['format'], info['key'], info['flipped'], info['config']['num_classes']) == \
        ('torchcfm', 'ema_model', True, 10)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    t, x, y = batch(config)
    with torch.no_grad():
        assert torch.equal(teacher(t, x, y), -v_ema(1 - t, x, y))  # exact: the same ops on the same numbers


def test_loader_picks_largest_official_ema_and_drops_gan_head(tmp_path):
    v = {decay: unet(SMALL32, seed=i) for i, decay in enumerate(['0.999', '0.9999', '0.9996'])}
    emas = {decay: {**sd_with_prefix(net, '_orig_mod.'), 'cls_pred_branch.0.weight': torch.ones(256, 256, 2, 2)}
            for decay, net in v.items()}  # official UNetModelWrapperWithHead carries an unused GAN head
    path = str(tmp_path / 'cifar10_uncond_FM_400000.pt')
    torch.save({'net_model': v['0.999'].state_dict(), 'ema_models': emas, 'sched': {}, 'optim': {}, 'step': 1}, path)
    t, x, _ = batch(SMALL32)
    for ema_key, expected in [(None, '0.9999'), (0.999, '0.999'), ('0.9996', '0.9996'), ('0.9990', '0.999'),
                              ('0.99990', '0.9999')]:  # decays match as numbers, as sample.py --ema does
        teacher, info = load_teacher(path, ema_key=ema_key, **SMALL_OVERRIDES)
        assert (info['format'], info['key'], info['dropped']) == \
            ('realuid', f'ema_models/{expected}', ['cls_pred_branch.0.weight'])
        with torch.no_grad():
            assert torch.equal(teacher(t, x), -v[expected](1 - t, x))  # exact, as above
    with pytest.raises(ValueError, match='no EMA decay 0.5'):
        load_teacher(path, ema_key=0.5, **SMALL_OVERRIDES)


def test_loader_reads_bare_state_dict_with_module_prefix(tmp_path):
    v = unet(SMALL32)
    path = str(tmp_path / 'bare.pt')
    torch.save(sd_with_prefix(v, 'module._orig_mod.'), path)
    teacher, info = load_teacher(path, **SMALL_OVERRIDES)
    assert (info['format'], info['flipped'], info['config']['num_classes']) == ('state_dict', True, None)
    t, x, _ = batch(SMALL32)
    with torch.no_grad():
        assert torch.equal(teacher(t, x), -v(1 - t, x))  # exact, as above


def test_own_format_roundtrips_without_flip(tmp_path):
    for config in [dict(SMALL16, num_classes=10), dict(kind='mlp', dim=2, hidden=64, num_classes=10)]:
        net = unet(config)
        path = str(tmp_path / 'teacher.pt')
        save_teacher(path, net, config, extra={'step': 7, 'config': {'lr': 1e-4}})
        assert not (tmp_path / 'teacher.pt.tmp').exists()
        ckpt = torch.load(path, weights_only=True)
        assert (ckpt['step'], ckpt['config']['lr'], ckpt['config']['model']) == (7, 1e-4, config)
        teacher, info = load_teacher(path)
        assert (info['format'], info['flipped']) == ('ours', False)
        t, x, y = batch(dict(config, dim=[2]) if config['kind'] == 'mlp' else config)
        with torch.no_grad():
            assert torch.equal(teacher(t, x, y), net(t, x, y))  # exact: no flip, same weights


def test_flipped_teacher_resaved_in_own_format_stays_flipped(tmp_path):
    v = unet(SMALL32)
    torch.save({'ema_model': v.state_dict()}, str(tmp_path / 'cfm.pt'))
    teacher, info = load_teacher(str(tmp_path / 'cfm.pt'), **SMALL_OVERRIDES)
    assert isinstance(build_model(info['config']), TimeFlip)  # fake / generator nets get the teacher's keys
    save_teacher(str(tmp_path / 'ours.pt'), teacher, info['config'])
    reloaded, info2 = load_teacher(str(tmp_path / 'ours.pt'))
    assert (info2['format'], info2['flipped']) == ('ours', True)
    t, x, _ = batch(SMALL32)
    with torch.no_grad():
        assert torch.equal(reloaded(t, x), teacher(t, x))  # exact, same weights and ops


@pytest.mark.parametrize('config, says', [
    (dict(dim=(3, 16, 16), channel_mult=(1, 2, 2, 2, 2, 2)), 'cannot halve a 16-pixel input 5 times'),
    (dict(dim=(3, 28, 28), channel_mult=(1, 2, 2, 2)), 'cannot halve a 28-pixel input 3 times'),   # 7 -> 4 -> 8 != 7
    (dict(dim=(3, 16, 16), channel_mult=(1, 2), attention_resolutions='16,4'), 'no level has size 4 (sizes 16, 8)'),
    (dict(dim=(3, 16, 16), channel_mult=(1, 2), num_channels=80, num_head_channels=64),
     'not divisible by num_head_channels=64')])
def test_unet_refuses_configs_it_cannot_run_when_built(config, says):
    # without these checks: a torch.cat size error in the first forward, or attention silently left out
    with pytest.raises(ValueError, match=re.escape(says)):
        UNet(**{**dict(num_channels=32, num_res_blocks=1, num_head_channels=-1), **config})


def test_loader_rejects_garbled_and_unknown_files(tmp_path):
    (tmp_path / 'garbled.pt').write_bytes(b'not a checkpoint at all')
    torch.save({'weights': [1, 2, 3]}, str(tmp_path / 'unknown.pt'))
    torch.save({'ema_model': unet(SMALL32).state_dict()}, str(tmp_path / 'small.pt'))
    torch.save(dict(step=7, model=dict(SMALL32), net={}, ranks=[{}]), str(tmp_path / 'teacher_ckpt.pt'))  # train.py's
    torch.save({'ema_models': {'best': {}, 0.999: {}}}, str(tmp_path / 'named.pt'))  # keys: no number, a float
    for name, kwargs, message in [('missing.pt', {}, 'does not exist'), ('garbled.pt', {}, 'not a readable'),
                                  ('unknown.pt', {}, 'unrecognised checkpoint'),
                                  ('teacher_ckpt.pt', {}, r"train.py's resumable training state \(step 7\)"),
                                  ('small.pt', {}, 'do not fit the model config'),  # CIFAR-10 size by default
                                  ('small.pt', dict(SMALL_OVERRIDES, ema_key=0.999),
                                   r'ema_key 0.999 \(keys it has: none'),
                                  ('named.pt', dict(ema_key='0.5'), r"no EMA decay 0.5 in 'ema_models' \(has 0.999, b"),
                                  ('named.pt', {}, "'ema_models' is not a dict keyed by EMA decay")]:
        with pytest.raises(ValueError, match=message):
            load_teacher(str(tmp_path / name), **kwargs)
    with pytest.raises(ValueError, match='not a readable'):
        load_checkpoint_state(str(tmp_path / 'garbled.pt'))


def test_generator_init_is_one_euler_step_of_teacher(tmp_path):
    # G(z) = z - f(1, z) = z + (0 - 1) f(1, z): one Euler step of dx/dt = f(t, x) from t=1 to t=0,
    # which for a flipped teacher is z + v(0, z), the official RealUID generator at initialisation
    config = dict(SMALL32, num_classes=10)
    v = unet(config)
    torch.save({'ema_model': v.state_dict()}, str(tmp_path / 'cfm.pt'))
    teacher, _ = load_teacher(str(tmp_path / 'cfm.pt'), **SMALL_OVERRIDES)
    generator = Generator(copy.deepcopy(teacher), make_interpolant('fm'))
    _, z, y = batch(config)
    ones, zeros = torch.ones(3), torch.zeros(3)
    with torch.no_grad():
        x_gen = generator(z, y)
        assert torch.equal(x_gen, z + (0 - 1) * teacher(ones, z, y))  # exact: 1 * out == out, a - (-b) == a + b
        assert torch.equal(x_gen, z + v(zeros, z, y))
    assert all(k.startswith('net.') for k in generator.state_dict())
    assert 'interp' not in dict(generator.named_modules()) and generator.interp.name == 'fm'


def one_step_by_hand(case, f, z, y):
    """Each family's data prediction at t = 1 from its definition (interpolants.py's class docstrings), not its code."""
    ones = torch.ones(len(z), dtype=z.dtype)
    if case in ('fm', 'bridge', 'si'):                          # x_t = (1 - t) x0 + t x1 + ..., one Euler step 1 -> 0
        return z - f(ones, z, y)
    a1, s1 = vp_alpha_sigma(1.0)                                # alpha(1) = 6.6e-3, sigma(1) ~ 1
    if case == 'vp':                                            # v = alpha x1 - sigma x0, x_1 = alpha x0 + sigma x1
        return a1 * z - s1 * f(ones, z, y)
    if case == 'vp-eps':
        return (z - s1 * f(ones, z, y)) / a1
    # ve: EDM's D = c_skip x + c_out F(c_in x) at sigma_max = 80, sigma_data = 0.5 (Karras et al. 2022, Table 1)
    norm = (80.0 ** 2 + 0.5 ** 2) ** 0.5
    return 0.25 / norm ** 2 * z + 80.0 * 0.5 / norm * f.net(ones, z / norm, y)


@pytest.mark.parametrize('num_classes', [None, 4], ids=['uncond', 'cond'])
@pytest.mark.parametrize('case', ['fm', 'vp', 'vp-eps', 've', 'bridge', 'si'])
def test_generator_is_the_interpolants_data_prediction_at_t1(case, num_classes):
    # G(z, y) = interp.to_x0(1, z, f(1, z, y)) with the real interpolants (f the preconditioned network, as train.py
    # builds it), and equal to each family's formula written here: for vp and ve it is not z - f(1, z, y)
    name, _, prediction = case.partition('-')
    interp = make_interpolant(name, **({'prediction': prediction} if prediction else {}))
    torch.manual_seed(0)
    f = interp.precondition(MLP(dim=3, hidden=32, num_classes=num_classes).double())
    g = torch.Generator().manual_seed(1)
    z = interp.prior((5, 3), generator=g).double()
    y = None if num_classes is None else torch.randint(num_classes, (5,), generator=g)
    ones = torch.ones(5, dtype=torch.float64)
    with torch.no_grad():
        x = Generator(f, interp)(z, y)
        assert torch.equal(x, interp.to_x0(ones, z, f(ones, z, y)))     # exact: the same ops
        expected = one_step_by_hand(case, f, z, y)
        assert not torch.allclose(expected, z - f(ones, z, y)) or case in ('fm', 'bridge', 'si')
        torch.testing.assert_close(x, expected, rtol=1e-12, atol=1e-12)  # float64, a few flops in another order


def test_mlp_shapes_with_and_without_labels():
    x, t = torch.randn(5, 2), torch.rand(5)
    assert MLP(dim=2)(t, x).shape == (5, 2)
    assert build_model(dict(kind='mlp', dim=3, hidden=32, num_layers=2))(0.5, torch.randn(4, 3)).shape == (4, 3)
    net = MLP(dim=2, num_classes=4)
    out0, out1 = net(t, x, torch.zeros(5, dtype=torch.long)), net(t, x, torch.ones(5, dtype=torch.long))
    assert out0.shape == (5, 2) and (out0 - out1).abs().max() > 1e-4  # default init: N(0, 1) label embeddings
    with pytest.raises(ValueError, match='class-conditional'):
        net(t, x)


def small_unet_config(num_channels):
    # train.py's U-Net for 16x16 images (--channels C --channel-mult 1 2 --res-blocks 1 --attn 8), class-conditional
    return dict(kind='unet', dim=[3, 16, 16], num_channels=num_channels, num_res_blocks=1, channel_mult=[1, 2],
                attention_resolutions='8', dropout=0.0, num_classes=10,
                num_head_channels=64 if num_channels >= 64 else -1, num_heads=4)


def relative_change(new, old):
    return ((new - old).norm() / old.norm()).item()


@pytest.mark.parametrize('num_channels', [16, 32, 64, 128])
def test_unet_sees_time_and_label_at_every_width(num_channels):
    # Threshold 1e-3 for every relative change below: float32 noise is ~1e-7 (measured 2e-7 for a ResBlock that is
    # blind to its embedding, as every 32-wide one was under GroupNorm(32, ch)); the smallest measured response is
    # 0.014 (t 0.2 -> 0.8 moves torchcfm's unscaled sinusoidal embedding little), labels move outputs by ~0.5.
    # Under the old GroupNorm(32, ch), 16 channels does not build and at 32 channels 4 of the 8 ResBlocks are blind.
    config = small_unet_config(num_channels)
    net = unet(config)  # perturbed: a fresh net outputs 0 whatever t and y are
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *config['dim'], generator=g)
    t_early, t_late = torch.full((3,), 0.2), torch.full((3,), 0.8)
    y, y_other = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5])
    with torch.no_grad():
        out = net(t_early, x, y)
        assert relative_change(net(t_late, x, y), out) > 1e-3
        assert relative_change(net(t_early, x, y_other), out) > 1e-3
        # every ResBlock, fed the same input: its residual branch must move with the embedding it is given. The
        # whole-net check above alone misses the 32-channel bug (2 channels per group at 64 wide still pass t, y).
        def embedding(t, y):
            return net.time_embed(timestep_embedding(t, num_channels)) + net.label_emb(y)
        blocks = {name: m for name, m in net.named_modules() if isinstance(m, ResBlock)}
        assert len(blocks) == 8
        for name, block in blocks.items():
            h = torch.randn(3, block.in_layers[0].num_channels, 8, 8, generator=g)
            def residual(emb):
                return block(h, emb) - block.skip_connection(h)
            res = residual(embedding(t_early, y))
            change_t = relative_change(residual(embedding(t_late, y)), res)
            change_y = relative_change(residual(embedding(t_early, y_other)), res)
            assert change_t > 1e-3 and change_y > 1e-3, f'{name} blind to its embedding: {change_t:.1e}, {change_y:.1e}'


def test_group_norm_keeps_torchcfm_groups_at_128_channels_and_four_channels_per_group_below():
    assert [group_norm(ch).num_groups for ch in (128, 256, 384, 512)] == [32] * 4  # every width of CIFAR10_UNET
    assert [group_norm(ch).num_groups for ch in (64, 32, 16, 8)] == [16, 8, 4, 2]
    for ch in range(4, 1025, 4):  # every multiple of 4 builds, with at least 4 channels per group
        groups = group_norm(ch).num_groups
        assert groups <= 32 and ch % groups == 0 and ch // groups >= 4
    for num_channels in (8, 12, 20, 24, 40):  # widths that are not powers of 2 build and run
        config = dict(small_unet_config(num_channels), dim=[3, 8, 8], attention_resolutions='4')
        t, x, y = batch(config, B=2)
        assert build_model(config)(t, x, y).shape == x.shape
    with pytest.raises(ValueError, match='fewer than 4 channels'):
        build_model(dict(small_unet_config(2), num_heads=1))
    with pytest.raises(ValueError, match='not divisible by num_heads=8'):  # attention at 8x8: 12 channels
        build_model(dict(small_unet_config(6), num_heads=8))


def test_build_model_kinds():
    assert isinstance(build_model(SMALL32), UNet) and isinstance(build_model(dict(kind='mlp')), MLP)
    assert isinstance(build_model(dict(SMALL32, time_flip=True)).net, UNet)
    with pytest.raises(ValueError, match="kind 'unet' or 'mlp'"):
        build_model(dict(kind='dit'))
    with pytest.raises(ValueError, match='bad unet model config'):
        build_model(dict(SMALL32, use_fp16=True))


@pytest.mark.parametrize('num_classes', [None, 10], ids=['uncond', 'cond'])
def test_unet_matches_torchcfm_cifar10(num_classes):
    # the paper's teacher architecture: torchcfm examples/images/cifar10 config, ~36M parameters
    torchcfm_unet = pytest.importorskip('torchcfm.models.unet.unet')
    kwargs = dict(dim=(3, 32, 32), num_res_blocks=2, num_channels=128, channel_mult=[1, 2, 2, 2], num_heads=4,
                  num_head_channels=64, attention_resolutions='16')
    torch.manual_seed(0)
    ref = torchcfm_unet.UNetModelWrapper(**kwargs, dropout=0.1, class_cond=num_classes is not None,
                                         num_classes=num_classes or 1000).eval()
    torch.manual_seed(0)
    ours = UNet(**kwargs, num_classes=num_classes).eval()
    ref_sd = ref.state_dict()
    assert list(ref_sd) == list(ours.state_dict())  # same keys in the same order
    assert all(torch.equal(ref_sd[k], v) for k, v in ours.state_dict().items())  # same init from the same seed
    with torch.no_grad():
        for p in ref.parameters():  # perturb, so that zero-initialised layers take part in the comparison
            p.add_(0.05 * torch.randn_like(p))
    ours.load_state_dict(ref.state_dict(), strict=True)
    t, x, y = batch(dict(dim=[3, 32, 32], num_classes=num_classes), B=2)
    with torch.no_grad():
        out, expected = ours(t, x, y), ref(t, x, y)
    # float32; only the attention differs (fused SDPA on (B, HW, C) vs torchcfm's einsum): measured 1.5e-6 relative
    # (7.7e-6 max abs) on CPU; a wrong head or q/k/v split, or a missing scale, is O(1)
    assert (out - expected).norm() / expected.norm() < 1e-5



UNET_REFERENCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'tests', 'data', 'unet_reference.npz')


@pytest.mark.parametrize('name', ['uncond', 'cond'])
def test_unet_computes_torchcfms_function_pinned_without_torchcfm(name):
    """models.UNet against tests/data/unet_reference.npz, which torchcfm 1.0.7's own UNetModelWrapper computed once
    (experiments/unet_reference.py): 128 channels, 16x16 inputs, 2 or 3 levels with attention, t in {0, 0.3, 0.85, 1},
    weights conftest.random_unet_weights(0) in torchcfm's layout. Every torchcfm and official RealUID checkpoint a
    user loads relies on this function and on these state-dict keys, and the default suite has no torchcfm.

    Tolerance atol = rtol = 2e-5 on outputs of mean |out| 0.4 (max 2): the script measured max |ours - torchcfm|
    1.7e-6, the size of torchcfm's own float32 rounding (1.6e-6 from ours in float64): fused SDPA on (B, HW, C)
    against torchcfm's einsum attention. A time embedding with frequency denominator half - 1 instead of half moves
    the outputs by 6e-4 to 1.8e-3 at every t but 0 (measured); swapped cos/sin, a wrong head split or a missing
    attention scale by O(1).
    """
    with np.load(UNET_REFERENCE) as reference:
        ref = {k.split('/')[1]: reference[k] for k in reference.files if k.startswith(name + '/')}
    config, layout = json.loads(str(ref['config'])), json.loads(str(ref['layout']))
    net = build_model(config).eval()
    assert [[k, list(v.shape)] for k, v in net.state_dict().items()] == layout  # torchcfm's keys, shapes and order
    net.load_state_dict(random_unet_weights(net.state_dict(), 0), strict=True)
    t, x, expected = torch.from_numpy(ref['t']), torch.from_numpy(ref['x']), torch.from_numpy(ref['out'])
    y = torch.from_numpy(ref['y']) if 'y' in ref else None
    assert t[0] == 0 and t[-1] == 1 and (y is None) == (config['num_classes'] is None)
    assert expected.abs().mean() > 0.1                      # O(1) outputs: atol 2e-5 is a relative statement
    with torch.no_grad():
        torch.testing.assert_close(net(t, x, y), expected, atol=2e-5, rtol=2e-5)


FEATURE_NETS = [(dict(SMALL16, num_classes=10), 64),                                   # bottleneck: 2 * 32 channels
                (dict(kind='mlp', dim=2, hidden=48, num_layers=3, num_classes=10), 48)]  # last hidden layer


@pytest.mark.parametrize('config, feature_dim', FEATURE_NETS, ids=['unet', 'mlp'])
def test_features_for_a_discriminator_head(config, feature_dim):
    # UID+GAN baseline (eq. 8): a logit head reads the fake network's bottleneck through features(t, x, y)
    net = unet(config)
    t, x, y = batch(dict(config, dim=[2]) if config['kind'] == 'mlp' else config)
    flipped = TimeFlip(net)
    assert net.feature_dim == flipped.feature_dim == feature_dim
    features = net.features(t, x, y)
    assert features.shape == (3, feature_dim)
    assert torch.equal(flipped.features(t, x, y), net.features(1 - t, x, y))  # exact: same ops on the same numbers
    assert torch.equal(net.features(0.3, x, y), net.features(torch.full((3,), 0.3), x, y))  # 0-d t expands
    if config['kind'] == 'mlp':  # forward is the output layer on the features
        assert torch.equal(net(t, x, y), net.out(features))
    # the features respond to x, and a head on them trains the encoder: gradients reach the first layer
    head = torch.nn.Linear(feature_dim, 1)
    assert relative_change(net.features(t, x + 0.1 * torch.randn_like(x), y), features) > 1e-3  # measured 0.01-0.02
    net.zero_grad()
    head(flipped.features(t, x, y)).sum().backward()
    first = net.input_blocks[0][0].weight if config['kind'] == 'unet' else net.inp.weight
    assert first.grad is not None and first.grad.abs().sum() > 0
    if config['kind'] == 'unet':  # features run the encoder only: the decoder gets no gradient
        assert all(p.grad is None for p in net.output_blocks.parameters())


# ---------------------------------------------------------------------------------------------------- fused kernels

def legacy_attention(block, x):
    # AttentionBlock.forward written the unfused way torchcfm's QKVAttentionLegacy computes it: 1x1 Conv1d
    # on (B, C, HW), heads first then q, k, v per head, explicit softmax(q k^T / sqrt(d)) v, then proj_out
    B, C, H, W = x.shape
    heads, d = block.num_heads, C // block.num_heads
    h = x.reshape(B, C, H * W)
    qkv = torch.nn.functional.conv1d(torch.nn.functional.group_norm(h, block.norm.num_groups, block.norm.weight,
                                                                    block.norm.bias, block.norm.eps),
                                     block.qkv.weight, block.qkv.bias)
    q, k, v = qkv.reshape(B * heads, 3 * d, H * W).split(d, dim=1)      # (B heads, d, HW) each
    weight = torch.softmax(torch.einsum('bct,bcs->bts', q, k) / d ** 0.5, dim=-1)
    a = torch.einsum('bts,bcs->bct', weight, v).reshape(B, C, H * W)
    return (h + torch.nn.functional.conv1d(a, block.proj_out.weight, block.proj_out.bias)).reshape(B, C, H, W)


@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'channels_last'])
def test_attention_runs_on_the_flash_kernel_and_computes_the_legacy_function(channels_last):
    # Before: q, k, v had stride HW along the head dimension and SDPA fell back to its math kernel; restricted to
    # FLASH_ATTENTION alone, SDPA raises 'No available kernel' for such inputs (checked below on the old layout).
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from models import AttentionBlock
    torch.manual_seed(0)
    block = AttentionBlock(64, num_heads=2)                             # d = 32, 8x8 = 64 positions
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))                           # proj_out is zero-initialised
    x = torch.randn(3, 64, 8, 8)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x_ref = x.detach().clone().requires_grad_(True)
    x.requires_grad_(True)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = block(x)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    grads = [x.grad] + [p.grad.clone() for p in block.parameters()]
    block.zero_grad()
    ref = legacy_attention(block, x_ref)
    (ref * torch.linspace(-1, 1, ref.numel()).view_as(ref)).sum().backward()
    ref_grads = [x_ref.grad] + [p.grad for p in block.parameters()]
    assert relative_change(out, ref) < 1e-6                             # float32 summation order; measured 6e-8
    for g, r in zip(grads, ref_grads):
        assert relative_change(g, r) < 1e-6
    old = torch.randn(3, 2, 3 * 32, 64).transpose(2, 3).chunk(3, dim=-1)  # the unfused layout
    with warnings.catch_warnings(record=True) as caught, sdpa_kernel([SDPBackend.FLASH_ATTENTION]), \
            pytest.raises(RuntimeError, match='No available kernel'):
        warnings.simplefilter('always')
        torch.nn.functional.scaled_dot_product_attention(*old)
    assert any('require the last dimension of the input to have stride 1' in str(w.message) for w in caught)


def test_group_norm_keeps_the_input_dtype_under_autocast_and_nn_groupnorm_otherwise():
    ours, ref = group_norm(64), torch.nn.GroupNorm(16, 64)
    assert list(ours.state_dict()) == list(ref.state_dict()) == ['weight', 'bias']   # torchcfm's keys
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(2, 64, 8, 8)
    assert torch.equal(ours(x), ref(x))                                 # fp32: the same kernel on the same numbers
    with torch.autocast('cpu', torch.bfloat16):                        # (CUDA's autocast would return fp32)
        out = ours(x.bfloat16())
    assert out.dtype == torch.bfloat16
    exact = torch.nn.functional.group_norm(x.bfloat16().double(), 16, ours.weight.double(), ours.bias.double())
    # fp32 statistics: the error is bf16 rounding of the output (2^-9 relative), not of the mean and variance
    assert relative_change(out.double(), exact) < 4e-3                  # measured 2.4e-3 (bf16 weights too)


def test_ema_key_raw_takes_the_official_raw_network(tmp_path):
    # official generate_samples.py without --ema_decay: checkpoint['net_model'] (teacher) or ['gen'] (one step)
    v = {key: unet(SMALL32, seed=i) for i, key in enumerate(['raw', '0.999'])}
    path = str(tmp_path / 'teacher.pt')
    torch.save({'net_model': v['raw'].state_dict(), 'ema_models': {'0.999': v['0.999'].state_dict()}}, path)
    t, x, _ = batch(SMALL32)
    teacher, info = load_teacher(path, ema_key='raw', **SMALL_OVERRIDES)
    assert info['key'] == 'net_model'
    with torch.no_grad():
        assert torch.equal(teacher(t, x), -v['raw'](1 - t, x))
    torch.save({'gen': v['raw'].state_dict(), 'ema_gens': {'0.999': v['0.999'].state_dict()}}, path)
    assert load_teacher(path, ema_key='raw', **SMALL_OVERRIDES)[1]['key'] == 'gen'
    assert load_teacher(path, **SMALL_OVERRIDES)[1]['key'] == 'ema_gens/0.999'    # the default stays the largest EMA
    torch.save({'ema_gens': {'0.999': v['0.999'].state_dict()}}, path)
    with pytest.raises(ValueError, match=r'no network for ema_key raw \(keys it has: 0.999\)'):
        load_teacher(path, ema_key='raw', **SMALL_OVERRIDES)


def test_ema_key_naming_no_network_of_the_checkpoint_is_refused_with_the_keys_it_has(tmp_path):
    # every ema_key is honoured or refused: before, 'raw' on our teacher.pt (one network, its EMA) silently loaded
    # the EMA, while 0.5 on the same file was refused; 'raw' on a torchcfm file without net_model named no keys
    v = {key: unet(SMALL32, seed=i) for i, key in enumerate(['ema', 'raw'])}
    t, x, _ = batch(SMALL32)
    ours, unrecorded = str(tmp_path / 'teacher.pt'), str(tmp_path / 'resaved.pt')
    save_teacher(ours, v['ema'], SMALL32, extra={'config': {'args': {'teacher_ema': 0.9999, 'interpolant': 'fm'}}})
    save_teacher(unrecorded, v['ema'], SMALL32)                 # no training arguments: its decay is unknown
    torch.save({'ema_model': v['ema'].state_dict()}, str(tmp_path / 'cfm_ema.pt'))
    torch.save({'ema_model': v['ema'].state_dict(), 'net_model': v['raw'].state_dict()}, str(tmp_path / 'cfm.pt'))
    torch.save(v['ema'].state_dict(), str(tmp_path / 'bare.pt'))
    for path, ema_key, has in [(ours, 'raw', '0.9999'), (ours, 0.999, '0.9999'), (ours, '0.5', '0.9999'),
                               (unrecorded, 'raw', 'none'), (unrecorded, 0.9999, 'none'),
                               (str(tmp_path / 'cfm_ema.pt'), 'raw', 'none'),
                               (str(tmp_path / 'cfm.pt'), 0.9999, 'raw'), (str(tmp_path / 'bare.pt'), 'raw', 'none')]:
        with pytest.raises(ValueError) as error:
            load_teacher(path, ema_key=ema_key, **SMALL_OVERRIDES)
        assert str(error.value).startswith(f'{path}: no network for ema_key {ema_key} (keys it has: {has}')
        assert '\n' not in str(error.value)
    for path, ema_key, expected in [(ours, None, 'ema'), (ours, 0.9999, 'ema'), (ours, '0.99990', 'ema'),
                                    (unrecorded, None, 'ema'), (str(tmp_path / 'cfm.pt'), 'raw', 'raw'),
                                    (str(tmp_path / 'cfm.pt'), None, 'ema'), (str(tmp_path / 'bare.pt'), None, 'ema')]:
        teacher, info = load_teacher(path, ema_key=ema_key, **SMALL_OVERRIDES)   # existing keys still load
        with torch.no_grad():
            got = teacher(t, x) if info['format'] == 'ours' else -teacher(1 - t, x)
            assert torch.equal(got, v[expected](t, x)), (path, ema_key)  # exact: the same weights and ops


# ------------------------------------------------------------------------------------ conditioned networks (App. C)
# Data-to-data: every network gets the corrupted sample c in its y slot, concatenated to its input (I2SB, DDBM:
# on channels for the U-Net). Without a condition the networks are unchanged: test_train.py's pinned runs.

COND_MLP = dict(kind='mlp', dim=2, hidden=32, num_layers=3, num_classes=None, cond_dim=2)   # the toy couplings
COND_UNET = dict(SMALL16, dim=[3, 16, 16], cond_channels=3)                                 # c: the corrupted image


def cond_net(config, seed=0):
    # perturbed as unet() does: a fresh U-Net outputs 0 whatever x and c are
    return unet(config, seed)


def cond_batch(config, B=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    dim = config['dim'] if isinstance(config['dim'], list) else [config['dim']]
    c_shape = [config['cond_dim']] if config['kind'] == 'mlp' else [config['cond_channels'], *dim[1:]]
    return torch.rand(B, generator=g), torch.randn(B, *dim, generator=g), torch.randn(B, *c_shape, generator=g)


def first_weight_key(net):
    return 'inp.weight' if isinstance(net, MLP) else 'input_blocks.0.0.weight'


def first_weight(net):
    return net.get_parameter(first_weight_key(net))


@pytest.mark.parametrize('config', [COND_MLP, COND_UNET], ids=['mlp', 'unet'])
def test_conditioned_net_reads_x_then_c_in_its_first_layer(config):
    # The conditioned network is the unconditioned one with the first layer widened for c, right after x: with the
    # c columns (input channels) zero it computes plain(t, x) whatever c is, and with the x columns zero and the
    # plain's x weights in the c columns it computes plain(t, c). A network that ignores c, puts it before x or after
    # the time features fails one of the two.
    plain_config = {k: v for k, v in config.items() if k not in ('cond_dim', 'cond_channels')}
    plain, net = cond_net(plain_config), build_model(config).eval()
    t, x, c = cond_batch(config)
    n = config['dim'] if config['kind'] == 'mlp' else config['dim'][0]      # the x columns / channels
    w = first_weight(plain)                                                 # mlp: (hidden, dim + time_dim)
    assert first_weight(net).shape[1] == w.shape[1] + n                     # c has x's size in both configs
    with torch.no_grad():
        cases = [(w[:, :n], 0 * w[:, :n], plain(t, x)), (0 * w[:, :n], w[:, :n], plain(t, c))]
    for x_part, c_part, expected in cases:
        state = dict(plain.state_dict(), **{first_weight_key(net): torch.cat([x_part, c_part, w[:, n:]], dim=1)})
        net.load_state_dict(state, strict=True)                             # every other key and shape as plain's
        with torch.no_grad():
            out = net(t, x, c)
        assert out.shape == x.shape                                         # dim[0] channels out, not dim[0] + 3
        # float32, the same sums with zero terms added: measured 0 (U-Net) and <= 7e-8 relative (MLP's matmul)
        assert relative_change(out, expected) < 1e-5


@pytest.mark.parametrize('config', [COND_MLP, COND_UNET], ids=['mlp', 'unet'])
def test_conditioned_net_output_and_features_follow_c(config):
    net = cond_net(config)
    t, x, c = cond_batch(config)
    c_other = c + torch.randn_like(c)
    with torch.no_grad():
        out, features = net(t, x, c), net.features(t, x, c)
        assert out.shape == x.shape and features.shape == (3, net.feature_dim)
        # c + N(0, I) moves outputs and features by 0.12-0.68 relative (measured); a c ignored, by 0
        assert relative_change(net(t, x, c_other), out) > 1e-2
        assert relative_change(net.features(t, x, c_other), features) > 1e-2
        assert torch.equal(net(t, x, c.clone()), out)                       # exact: same numbers, same ops
        # TimeFlip and Generator hand c through unchanged (the generator of App. C: G(z, c), z = c + s zeta)
        assert torch.equal(TimeFlip(net)(t, x, c), -net(1 - t, x, c))
        z = c + 0.5 * torch.randn_like(c)                                   # c has x's shape in both configs
        assert torch.equal(Generator(net, make_interpolant('fm'))(z, c), z - net(torch.ones(3), z, c))
    head = torch.nn.Linear(net.feature_dim, 1)                              # a GAN head trains through c's weights
    head(net.features(t, x, c)).sum().backward()
    assert first_weight(net).grad[:, x.shape[1]:x.shape[1] + c.shape[1]].abs().sum() > 0


def test_labels_and_a_condition_share_the_y_slot_so_both_are_refused():
    for build in (lambda: MLP(num_classes=3, cond_dim=2), lambda: build_model(dict(COND_MLP, num_classes=3)),
                  lambda: build_model(dict(COND_UNET, num_classes=3))):
        with pytest.raises(ValueError, match='the y slot carries either class labels or a condition c: num_classes=3'):
            build()
    for bad in (0, -1, 2.0, True, '2'):
        with pytest.raises(ValueError, match=re.escape(f'cond_dim must be a positive integer or None, got {bad!r}')):
            MLP(cond_dim=bad)
    with pytest.raises(ValueError, match='cond_channels must be a positive integer or None, got 0'):
        build_model(dict(COND_UNET, cond_channels=0))
    with pytest.raises(ValueError, match='bad mlp model config'):           # each kind has its own key
        build_model(dict(COND_MLP, cond_channels=3))
    labelled = MLP(dim=2, num_classes=3)
    for y in (torch.randn(3, 2), torch.zeros(3), torch.zeros(3, 1, dtype=torch.long)):    # c, float labels, (B, 1)
        with pytest.raises(ValueError, match=re.escape(f'labels y must be integer class indices of shape (B,), got a '
                                                       f'{y.dtype} tensor of shape {tuple(y.shape)}')):
            labelled(torch.rand(3), torch.randn(3, 2), y)


@pytest.mark.parametrize('config', [COND_MLP, COND_UNET], ids=['mlp', 'unet'])
def test_conditioned_net_refuses_a_missing_or_misshapen_c_in_one_line(config):
    net = cond_net(config)
    t, x, c = cond_batch(config)
    expected = str((3, *c.shape[1:]))
    bad = [(None, 'the network is conditioned on c: pass c of shape ' + expected),
           (torch.zeros(3, dtype=torch.long), 'must be a float tensor of shape ' + expected),    # class labels
           (c.long(), 'must be a float tensor'), (c[:2], 'must have shape ' + expected),
           (c.double(), 'and dtype torch.float32'), (torch.cat([c, c], 1), 'must have shape ' + expected)]
    if config['kind'] == 'unet':                                            # another image size than x's
        bad.append((c[:, :, :8, :8], 'must have shape ' + expected))
    for y, says in bad:
        for call in (net, net.features):
            with pytest.raises(ValueError, match=re.escape(says)) as error:
                call(t, x, y)
            assert '\n' not in str(error.value)
    plain = cond_net({k: v for k, v in config.items() if k not in ('cond_dim', 'cond_channels')})
    with pytest.raises(ValueError, match='network takes none: build it with cond_dim'):
        plain(t, x, c)                                                      # a condition for an unconditioned net


@pytest.mark.parametrize('config', [COND_MLP, COND_UNET], ids=['mlp', 'unet'])
def test_conditioned_config_roundtrips_through_save_and_load_teacher(config, tmp_path):
    net, path = cond_net(config), str(tmp_path / 'teacher.pt')
    save_teacher(path, net, config, extra={'config': {'args': {'interpolant': 'fm'}}})
    assert torch.load(path, weights_only=True)['config']['model'] == config
    teacher, info = load_teacher(path)
    key = 'cond_dim' if config['kind'] == 'mlp' else 'cond_channels'
    assert info['config'][key] == config[key] and getattr(teacher, key) == config[key]
    t, x, c = cond_batch(config)
    with torch.no_grad():
        assert torch.equal(teacher(t, x, c), net(t, x, c))                 # exact: same weights, same ops
    fresh = build_model(info['config'])                                     # train.py's fake: the teacher's keys
    assert [(k, v.shape) for k, v in fresh.state_dict().items()] == [(k, v.shape) for k, v in net.state_dict().items()]
    with pytest.raises(ValueError, match='weights do not fit the model config .* of other shape'):
        load_teacher(path, **{key: None})                                   # a conditioned teacher read without c


def test_compiled_conditioned_nets_compute_the_eager_function_and_still_refuse_a_bad_c():
    # compile_blocks compiles the MLP whole (its check of c runs under dynamo) and the U-Net per block ('eager':
    # dynamo's graphs without a compiler, seconds); channels_last may change the convolution's summation order
    torch._dynamo.reset()
    try:
        for config in (COND_MLP, COND_UNET):
            net = cond_net(config)
            t, x, c = cond_batch(config)
            with torch.no_grad():
                expected = net(t, x, c)
                compile_blocks(net, backend='eager')
                assert relative_change(net(t, x, c), expected) < 1e-5
                with pytest.raises(ValueError, match='must have shape'):
                    net(t, x, c[:2])
    finally:
        torch._dynamo.reset()

