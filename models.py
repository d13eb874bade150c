"""Networks f(t, x, y), the one-step generator, and the teacher checkpoint loader. Imports only torch.

y is None, class labels (num_classes), or for data-to-data (App. C) a condition c, e.g. the corrupted image, that
MLP(cond_dim=...) / UNet(cond_channels=...) concatenate to x; a network takes labels or a condition, not both.

Time convention: t in [0, 1], t=0 data, t=1 source; f(t, x) = E[x1 - x0 | x_t] with x_t = (1 - t) x0 + t x1.
torchcfm and the official RealUID code use the flipped one (t=0 noise, v points to data). The conversion
f(t, x, y) = -v(1 - t, x, y) happens in exactly one place: `TimeFlip`, applied by `load_teacher`.
"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F


def zero_init(module):
    for p in module.parameters():
        p.detach().zero_()
    return module


def timestep_embedding(t, dim, max_period=10000):
    # ADM sinusoidal embedding [cos, sin] of t (B,); torchcfm feeds t in [0, 1] unscaled
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t[:, None].float() * freqs[None]  # (B, half)
    return F.pad(torch.cat([torch.cos(args), torch.sin(args)], dim=-1), (0, dim % 2))  # (B, dim)


class GroupNorm(nn.GroupNorm):
    # nn.GroupNorm (same parameters, state-dict keys and fp32 function) that keeps its input's dtype under autocast:
    # a bf16 activation goes through ATen's bf16 kernel, whose mean and variance accumulate in fp32, and comes out
    # bf16. Autocast's own policy runs group_norm in fp32: a bf16 -> fp32 copy in, an fp32 output that the SiLU
    # reads and the next conv casts back, 51 times per U-Net forward. Error against fp64: README, Throughput.
    def forward(self, x):
        if x.dtype == self.weight.dtype:                        # fp32 activations: nn.GroupNorm itself
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def group_norm(ch):
    # ADM's GroupNorm(32, ch) when every group keeps >= 4 channels (all widths of the 128-channel CIFAR-10 config),
    # else the most groups <= 32 that do: with 1 channel per group the norm subtracts each channel's spatial mean
    # and erases the time/label embedding a ResBlock has just added per channel (every 32-wide ResBlock ignored t, y)
    return GroupNorm(max(g for g in range(1, 33) if ch % g == 0 and ch // g >= 4), ch)


def check_labels(y, num_classes):
    if y is not None and num_classes is None and torch.is_tensor(y) and y.is_floating_point():
        raise ValueError('got a float y (a condition c?) but the network takes none: build it with cond_dim (MLP) '
                         'or cond_channels (UNet)')
    if (y is None) != (num_classes is None):
        raise ValueError('pass labels y (B,) if and only if the network is class-conditional (num_classes set)')
    if y is not None and (not torch.is_tensor(y) or y.is_floating_point() or y.dim() != 1):
        raise ValueError(f'labels y must be integer class indices of shape (B,), got {describe(y)}')


def check_condition(c, x, shape):
    # the condition of a data-to-data network (a coupling's corrupted sample), in the y slot: float, x's batch and
    # dtype, per-sample shape `shape`
    expected = (x.shape[0], *shape)
    if c is None:
        raise ValueError(f'the network is conditioned on c: pass c of shape {expected} as y')
    if not torch.is_tensor(c) or not c.is_floating_point():
        raise ValueError(f'the condition c must be a float tensor of shape {expected}, got {describe(c)}')
    if tuple(c.shape) != expected or c.dtype != x.dtype:
        raise ValueError(f'the condition c must have shape {expected} and dtype {x.dtype} (those of x {tuple(x.shape)}'
                         f'), got {describe(c)}')


def describe(v):
    return f'a {v.dtype} tensor of shape {tuple(v.shape)}' if torch.is_tensor(v) else f'a {type(v).__name__}'


def check_cond_args(num_classes, name, cond):
    # constructor arguments: labels and a condition share the y slot
    if cond is not None and (isinstance(cond, bool) or not isinstance(cond, int) or cond < 1):
        raise ValueError(f'{name} must be a positive integer or None, got {cond!r}')
    if cond is not None and num_classes is not None:
        raise ValueError(f'the y slot carries either class labels or a condition c: num_classes={num_classes} and '
                         f'{name}={cond} cannot both be set')


# ----------------------------------------------------------------------------------------------------
# ADM U-Net (Dhariwal & Nichol 2021) as configured by torchcfm's UNetModelWrapper: the same state-dict keys,
# init and forward, restricted to the flags its CIFAR-10 config uses (use_scale_shift_norm=False,
# resblock_updown=False, conv_resample=True, legacy attention order, learn_sigma=False). One deliberate change:
# `group_norm` keeps >= 4 channels per group: identical to torchcfm at 128 channels, different in narrower nets.

class ResBlock(nn.Module):
    def __init__(self, ch, emb_ch, out_ch, dropout):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_ch, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, out_ch))
        self.out_layers = nn.Sequential(group_norm(out_ch), nn.SiLU(), nn.Dropout(dropout),
                                        zero_init(nn.Conv2d(out_ch, out_ch, 3, padding=1)))
        self.skip_connection = nn.Identity() if out_ch == ch else nn.Conv2d(ch, out_ch, 1)

    def forward(self, x, emb):
        h = self.in_layers(x) + self.emb_layers(emb)[:, :, None, None]  # (B, out_ch, H, W)
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    def __init__(self, ch, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(ch)
        self.qkv = nn.Conv1d(ch, 3 * ch, 1)
        self.proj_out = zero_init(nn.Conv1d(ch, ch, 1))

    def forward(self, x):
        B, C, H, W = x.shape
        heads, d = self.num_heads, C // self.num_heads
        h = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C): a free view of channels_last activations
        # the 1x1 convs (Conv1d weights, torchcfm's keys) as linear maps on (B, HW, C), so that q, k, v come out with
        # a contiguous head dimension, which the fused SDPA kernels (flash, memory-efficient) require; legacy layout:
        # channels split into heads first, then each head's channels into q, k, v
        qkv = F.linear(h, self.qkv.weight[:, :, 0], self.qkv.bias).view(B, H * W, heads, 3, d)
        q, k, v = qkv.transpose(1, 2).unbind(3)  # (B, heads, HW, d) each, stride 1 along d
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, H * W, C)  # channel = head * d + i
        h = F.linear(h, self.proj_out.weight[:, :, 0], self.proj_out.bias)  # (B, HW, C)
        return x + h.transpose(1, 2).view(B, C, H, W)


class Downsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.op = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))


class EmbedSequential(nn.Sequential):
    def forward(self, x, emb):
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    def __init__(self, dim=(3, 32, 32), num_channels=128, num_res_blocks=2, channel_mult=(1, 2, 2, 2),
                 attention_resolutions='16',  # feature-map sizes with self-attention, e.g. '16' or '16,8'
                 num_heads=4,                 # used only if num_head_channels == -1
                 num_head_channels=64,        # heads = channels // num_head_channels
                 dropout=0.0,                 # torchcfm trains its CIFAR-10 teacher with 0.1
                 num_classes=None,            # None: unconditional; else label_emb is added to the time embedding
                 cond_channels=None):         # c (B, cond_channels, H, W) concatenated to x on channels (I2SB, DDBM)
        super().__init__()
        check_cond_args(num_classes, 'cond_channels', cond_channels)
        in_ch, size = dim[0], dim[-1]
        if min(int(mult * num_channels) for mult in channel_mult) < 4:
            raise ValueError(f'num_channels={num_channels} with channel_mult={list(channel_mult)} gives a level of '
                             'fewer than 4 channels, too few for GroupNorm with >= 4 channels per group')
        if isinstance(attention_resolutions, str):
            attention_resolutions = [r for r in attention_resolutions.split(',') if r]
        sizes = [size >> level for level in range(len(channel_mult))]  # each level halves the feature maps
        if size % 2 ** (len(channel_mult) - 1):
            raise ValueError(f'{len(channel_mult)} levels (channel_mult={list(channel_mult)}) cannot halve a '
                             f'{size}-pixel input {len(channel_mult) - 1} times')
        if any(int(r) not in sizes for r in attention_resolutions):
            raise ValueError(f'attention_resolutions={",".join(map(str, attention_resolutions))}: no level has size '
                             f'{next(r for r in attention_resolutions if int(r) not in sizes)} (sizes '
                             f'{", ".join(map(str, sizes))})')
        attention_ds = {size // int(r) for r in attention_resolutions}
        self.num_channels, self.num_classes, self.cond_channels = num_channels, num_classes, cond_channels

        def attention(ch):
            if num_head_channels == -1:
                if ch % num_heads:
                    raise ValueError(f'{ch} channels are not divisible by num_heads={num_heads}')
                return AttentionBlock(ch, num_heads)
            if ch % num_head_channels:
                raise ValueError(f'{ch} channels are not divisible by num_head_channels={num_head_channels}')
            return AttentionBlock(ch, ch // num_head_channels)

        # modules are created in torchcfm's order, so that one seed gives torchcfm's initial weights
        emb_ch = 4 * num_channels
        self.time_embed = nn.Sequential(nn.Linear(num_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_ch)
        ch = int(channel_mult[0] * num_channels)
        first = nn.Conv2d(in_ch + (cond_channels or 0), ch, 3, padding=1)  # reads [x, c]; output: in_ch channels
        self.input_blocks = nn.ModuleList([EmbedSequential(first)])
        skip_chs, ds = [ch], 1  # ds: downsampling factor of the current level
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [ResBlock(ch, emb_ch, int(mult * num_channels), dropout)]
                ch = int(mult * num_channels)
                if ds in attention_ds:
                    layers.append(attention(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chs.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_chs.append(ch)
                ds *= 2
        self.middle_block = EmbedSequential(ResBlock(ch, emb_ch, ch, dropout), attention(ch),
                                            ResBlock(ch, emb_ch, ch, dropout))
        self.feature_dim = ch  # width of the bottleneck, see `features`
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [ResBlock(ch + skip_chs.pop(), emb_ch, int(mult * num_channels), dropout)]
                ch = int(mult * num_channels)
                if ds in attention_ds:
                    layers.append(attention(ch))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), zero_init(nn.Conv2d(ch, in_ch, 3, padding=1)))

    def _encode(self, t, x, y):
        # input blocks and middle block -> (bottleneck (B, feature_dim, h, w), skip activations, embedding (B, 4 C))
        if self.cond_channels is None:
            check_labels(y, self.num_classes)
        else:
            check_condition(y, x, (self.cond_channels, *x.shape[2:]))
        t = torch.as_tensor(t, device=x.device).expand(x.shape[0])  # (B,), also from a 0-d t
        emb = self.time_embed(timestep_embedding(t, self.num_channels).to(x.dtype))  # (B, 4 C)
        if self.num_classes is not None:
            emb = emb + self.label_emb(y)
        h = x if self.cond_channels is None else torch.cat([x, y], dim=1)  # (B, C [+ cond_channels], H, W)
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return self.middle_block(h, emb), skips, emb

    def forward(self, t, x, y=None):
        h, skips, emb = self._encode(t, x, y)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h)  # (B, C, H, W)

    def features(self, t, x, y=None):
        # bottleneck features for a discriminator head (UID+GAN baseline, eq. 8): spatial mean of the middle block
        return self._encode(t, x, y)[0].mean((2, 3))  # (B, feature_dim)


class MLP(nn.Module):
    # for low-dimensional data: [x, (c,) Fourier features of t] (+ label embedding) -> SiLU hidden layers -> dim.
    # cond_dim: a condition c (B, cond_dim) in the y slot, concatenated to x (data-to-data, App. C)
    def __init__(self, dim=2, hidden=256, num_layers=3, time_dim=32, num_classes=None, cond_dim=None):
        super().__init__()
        check_cond_args(num_classes, 'cond_dim', cond_dim)
        self.time_dim, self.num_classes, self.cond_dim = time_dim, num_classes, cond_dim
        self.inp = nn.Linear(dim + (cond_dim or 0) + time_dim, hidden)
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(num_layers - 1))
        self.out = nn.Linear(hidden, dim)
        self.feature_dim = hidden  # see `features`

    def forward(self, t, x, y=None):
        return self.out(self.features(t, x, y))  # (B, dim)

    def features(self, t, x, y=None):
        # last hidden activation, after SiLU (the input of self.out; a discriminator head's input, eq. 8)
        if self.cond_dim is None:
            check_labels(y, self.num_classes)
        else:
            check_condition(y, x, (self.cond_dim,))
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])  # (B,)
        freqs = torch.logspace(0, 2, self.time_dim // 2, device=x.device, dtype=x.dtype)  # 1..100 rad per unit t
        args = t[:, None] * freqs  # (B, time_dim / 2)
        xc = [x] if self.cond_dim is None else [x, y]
        h = self.inp(torch.cat([*xc, torch.cos(args), torch.sin(args)], dim=-1))  # (B, hidden)
        if self.num_classes is not None:
            h = h + self.label_emb(y)
        for layer in self.hidden:
            h = layer(F.silu(h))
        return F.silu(h)  # (B, hidden)


class TimeFlip(nn.Module):
    # a network v of the flipped convention (torchcfm, official RealUID) seen in ours: f(t, x, y) = -v(1 - t, x, y)
    def __init__(self, net):
        super().__init__()
        self.net = net

    @property
    def feature_dim(self):
        return self.net.feature_dim

    def forward(self, t, x, y=None):
        return -self.net(1 - t, x, y)

    def features(self, t, x, y=None):
        return self.net.features(1 - t, x, y)  # the same time flip; features carry no direction, so no sign


class Generator(nn.Module):
    # one-step generator: data prediction of the interpolant at t=1, G(z) = interp.to_x0(1, z, net(1, z, y)).
    # Flow matching: G(z) = z - net(1, z), one Euler step 1 -> 0 of dx/dt = f(t, x) when net = teacher.
    # Data-to-data (App. C, eq. C.3): z = c + s zeta is the coupled source draw and y = c the condition, G(z, c).
    def __init__(self, net, interp):
        super().__init__()
        self.net = net
        object.__setattr__(self, 'interp', interp)  # plain attribute: not a submodule, not in the state dict

    def forward(self, z, y=None):
        t = torch.ones(z.shape[0], device=z.device, dtype=z.dtype)  # (B,)
        return self.interp.to_x0(t, z, self.net(t, z, y))


def compile_blocks(net, **options):  # options: torch.compile's (tests: backend='aot_eager')
    # train.py --compile: torch.compile (default inductor mode, static shapes) every ResBlock and AttentionBlock in
    # place (an MLP whole), conv weights channels_last. In place, so every call of the network runs compiled code
    # (also through TimeFlip, Generator, a DDP wrapper or a bare reference to the module) and the state dict keeps
    # its keys (no '_orig_mod.'); per block, so a few graphs per distinct block shape serve every network and
    # the compile time stays short. copy.deepcopy gives an eager copy (Module.__getstate__ drops the compiled call).
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 256)   # shapes x grad modes
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 4096)
    net.to(memory_format=torch.channels_last)
    for m in net.modules():
        if isinstance(m, (ResBlock, AttentionBlock, MLP)):
            m.compile(**{'dynamic': False, **options})
    return net


# ----------------------------------------------------------------------------------------------------
# Model configs and checkpoints

# torchcfm examples/images/cifar10 and official RealUID teacher (they train it with dropout 0.1)
CIFAR10_UNET = dict(kind='unet', dim=[3, 32, 32], num_channels=128, num_res_blocks=2, channel_mult=[1, 2, 2, 2],
                    attention_resolutions='16', num_heads=4, num_head_channels=64, dropout=0.0, num_classes=None)


def build_model(config):
    # {'kind': 'unet' | 'mlp', constructor arguments..., 'time_flip': bool (optional)} -> fresh network
    config = dict(config)
    kind, time_flip = config.pop('kind', None), config.pop('time_flip', False)
    if kind not in ('unet', 'mlp'):
        raise ValueError(f"model config needs kind 'unet' or 'mlp', got {kind!r}")
    try:
        net = (UNet if kind == 'unet' else MLP)(**config)
    except TypeError as e:
        raise ValueError(f'bad {kind} model config: {e}') from None
    return TimeFlip(net) if time_flip else net


def strip_prefixes(state_dict):
    # drop 'module.' (DataParallel/DDP) and '_orig_mod.' (torch.compile) wherever they occur in a key
    return {'.'.join(p for p in k.split('.') if p not in ('module', '_orig_mod')): v for k, v in state_dict.items()}


EMA_DICTS = ('ema_models', 'ema_gens')  # official RealUID: {str(decay): state dict}, teacher / generator
SINGLE_NETS = ('ema_model', 'net_model', 'model', 'gen', 'generator')  # torchcfm first, EMA preferred
RAW_NETS = SINGLE_NETS[1:]  # ema_key='raw': the network trained without EMA
EXTRA_HEADS = ('cls_pred_branch.',)  # official UNetModelWrapperWithHead's GAN head: not part of the flow


def is_state_dict(obj):
    return isinstance(obj, dict) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def same_decay(key, ema_key):  # numerically: '0.9990' and 0.999 find '0.999'; other keys only by their text
    try:
        return float(key) == float(ema_key)
    except (TypeError, ValueError):
        return str(key) == str(ema_key)


def ema_keys(ckpt):
    # what ema_key may name in a checkpoint, in words: its EMA decays, and 'raw' if it holds a network without EMA.
    # Ours (teacher.pt) holds one network, the EMA of decay --teacher-ema (recorded in its config's args)
    if 'teacher' in ckpt and isinstance(ckpt.get('config'), dict) and 'model' in ckpt['config']:
        decay = ckpt['config'].get('args', {}).get('teacher_ema')
        return [str(decay)] if decay is not None else []
    emas = next((ckpt[k] for k in EMA_DICTS if isinstance(ckpt.get(k), dict)), {})
    return sorted(map(str, emas)) + ['raw'] * any(k in ckpt for k in RAW_NETS)


def no_such_key(path, ckpt, ema_key):
    has = ', '.join(ema_keys(ckpt)) or 'none: one network, of unrecorded EMA, taken without a key'
    return ValueError(f'{path}: no network for ema_key {ema_key} (keys it has: {has})')


def load_checkpoint_state(path, ema_key=None, teachers_only=False):
    # -> (state dict, info {'format', 'key', 'config' (ours only, else None), 'flipped', 'dropped',
    #     'trained' (ours: the recorded training arguments, e.g. {'interpolant': 'fm', ...}; else {})})
    if not os.path.isfile(path):
        raise ValueError(f'checkpoint {path} does not exist')
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        raise ValueError(f'{path} is not a readable PyTorch checkpoint ({type(e).__name__})') from None
    if not isinstance(ckpt, dict):
        raise ValueError(f'{path} holds a {type(ckpt).__name__}, not a checkpoint dict')
    if 'ranks' in ckpt and 'step' in ckpt:  # train.py's ckpt.pt / teacher_ckpt.pt: optimizers, RNGs, data position
        raise ValueError(f"{path} is train.py's resumable training state (step {ckpt['step']}), not a network "
                         "checkpoint: use the run's teacher.pt")
    config, flipped = None, True
    if 'teacher' in ckpt and isinstance(ckpt.get('config'), dict) and 'model' in ckpt['config']:
        fmt, key, config = 'ours', 'teacher', dict(ckpt['config']['model'])
        state, flipped = ckpt['teacher'], bool(config.get('time_flip', False))
        if ema_key is not None and not any(same_decay(k, ema_key) for k in ema_keys(ckpt)):  # 'raw' is never one
            raise no_such_key(path, ckpt, ema_key)
    elif ema_key == 'raw':  # the network without EMA: the official 'gen' / 'net_model' (their default without a decay)
        key = next((k for k in RAW_NETS if k in ckpt), None)
        if key is None:
            raise no_such_key(path, ckpt, ema_key)
        fmt, state = ('torchcfm' if key == 'net_model' and 'ema_models' not in ckpt else 'realuid'), ckpt[key]
    elif any(k in ckpt for k in EMA_DICTS):
        name = next(k for k in EMA_DICTS if k in ckpt)
        emas = ckpt[name] if isinstance(ckpt[name], dict) else {}
        try:
            decay = max(emas, key=float) if ema_key is None else next((k for k in emas if same_decay(k, ema_key)), None)
        except (TypeError, ValueError):
            raise ValueError(f"{path}: '{name}' is not a dict keyed by EMA decay") from None
        if decay is None:
            raise ValueError(f"{path}: no EMA decay {ema_key} in '{name}' (has {', '.join(sorted(map(str, emas)))})")
        fmt, key, state = 'realuid', f'{name}/{decay}', emas[decay]
    elif any(k in ckpt for k in SINGLE_NETS):
        key = next(k for k in SINGLE_NETS if k in ckpt)
        fmt, state = ('torchcfm' if key in ('ema_model', 'net_model') else 'realuid'), ckpt[key]
    elif is_state_dict(ckpt):
        fmt, key, state = 'state_dict', None, ckpt
    else:
        raise ValueError(f"{path}: unrecognised checkpoint with keys {sorted(map(str, ckpt))[:6]}; expected ours "
                         "('teacher', 'config'), torchcfm ('ema_model'), RealUID ('ema_models') or a state dict")
    if teachers_only and (key in ('gen', 'generator') or str(key).startswith('ema_gens')):
        raise ValueError(f'{path} holds a one-step generator ({key}), not a teacher')
    if ema_key not in (None, 'raw') and fmt != 'ours' and not str(key).startswith(EMA_DICTS):
        raise no_such_key(path, ckpt, ema_key)
    if not is_state_dict(state):
        raise ValueError(f"{path}: entry '{key}' is not a state dict")
    state = strip_prefixes(state)
    dropped = sorted(k for k in state if fmt != 'ours' and k.startswith(EXTRA_HEADS))
    state = {k: v for k, v in state.items() if k not in dropped}
    trained = ckpt['config'].get('args', {}) if fmt == 'ours' else {}
    return state, dict(format=fmt, key=key, config=config, flipped=flipped, dropped=dropped, trained=trained)


def load_strict(net, state, path):
    # strict load, with the mismatch said in one sentence instead of load_state_dict's multi-line error
    expected = net.state_dict()
    missing, unexpected = sorted(expected.keys() - state.keys()), sorted(state.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & state.keys() if expected[k].shape != state[k].shape)
    if missing or unexpected or reshaped:
        raise ValueError(f'{path}: weights do not fit the model config ({len(missing)} missing e.g. {missing[:2]}, '
                         f'{len(unexpected)} unexpected e.g. {unexpected[:2]}, {len(reshaped)} of other shape e.g. '
                         f'{reshaped[:2]}); pass dim / num_channels / channel_mult / ... overrides')
    net.load_state_dict(state, strict=True)
    return net


def load_teacher(path, device='cpu', ema_key=None, teachers_only=False, **overrides):
    # -> (f(t, x, y) in our convention, frozen, eval mode; info {'format', 'config', 'flipped', 'key', 'dropped'}).
    # Foreign checkpoints get CIFAR10_UNET (num_classes from label_emb.weight) updated by overrides, and TimeFlip.
    # teachers_only: refuse the official distillation's one-step generators ('gen', 'ema_gens') with a ValueError.
    state, info = load_checkpoint_state(path, ema_key, teachers_only)
    if info['format'] == 'ours':
        config = {**info['config'], **overrides}
        net = load_strict(build_model(config), state, path)
    else:
        num_classes = state['label_emb.weight'].shape[0] if 'label_emb.weight' in state else None
        config = {**CIFAR10_UNET, 'num_classes': num_classes, **overrides, 'time_flip': False}
        net = TimeFlip(load_strict(build_model(config), state, path))
        config['time_flip'] = True  # build_model(config) now rebuilds a network with the teacher's keys
    info['config'] = config
    return net.to(device).eval().requires_grad_(False), info


def save_teacher(f, net, model_config, extra=None):
    # our format {'teacher': state dict, 'config': {'model': model_config, ...extra['config']}, ...extra} to f, a path
    # or a binary file (torch.save's); train.py writes it through fid.write_atomic, so a kill leaves no half file
    extra = dict(extra or {})
    ckpt = {**extra, 'teacher': strip_prefixes(net.state_dict()),
            'config': {**extra.get('config', {}), 'model': dict(model_config)}}
    torch.save(ckpt, f)
