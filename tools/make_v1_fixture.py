"""Make the ConvNeXt V1 reference fixture (test/fixtures/reference/small_v1*).

What it makes
-------------
An independent reference for the library's ConvNeXt V1 blocks (LayerScale `gamma`, no GRN),
computed by timm's own `timm.models.convnext.ConvNeXt` (the `convnext_*` family):

    ConvNeXt(depths=(2, 2, 2, 2), dims=(16, 32, 48, 64), num_classes=10,
             ls_init_value=1e-6, conv_mlp=False, use_grn=False)

Every parameter is then overwritten with a seeded random, non-trivial value (LayerScale
`gamma` uniform in 0.5..1.5 with a random sign per channel, LayerNorm weights around 1,
LayerNorm and all other biases nonzero, weights ~ N(0, 1/fan_in)), so a skipped or misapplied
LayerScale, a missing bias or an identity norm cannot pass by accident. Parameters, inputs and
the output weights `grad.R` are drawn in float64 and rounded to float32 first; the model then
runs in float64 on exactly those float32 values, and the results are stored as float32 (the
same scheme as the other files in test/fixtures/reference, see its README.md).

1. `<out>.safetensors` (e.g. small_v1.safetensors), the naming of small_timm.safetensors:
   - `param.<timm name>`: the timm state_dict (`stem.0/1`, `stages.S.downsample.0/1`,
     `stages.S.blocks.B.{gamma,conv_dw,norm,mlp.fc1,mlp.fc2}`, `head.norm`, `head.fc`);
   - `input.0.pixel_values` [2,3,64,64] and `input.1.pixel_values` [1,3,96,128] (NCHW);
   - `output.I.stage0..3` (NCHW stage outputs), `output.I.pre_logits` (pooled + head norm),
     `output.I.logits`;
   - `grad.R` [2,10]; `grad.<timm name>` = d sum(logits(input.0) * grad.R) / d param for every
     parameter; `grad.input` = the same with respect to `input.0.pixel_values`.
   Metadata: the config, the seed and the versions used.
2. `<out stem>_official.pt` (e.g. small_v1_official.pt): the same float32 weights in the
   naming of the official V1 repository facebookresearch/ConvNeXt (models/convnext.py):
   `downsample_layers.0.0` stem conv, `downsample_layers.0.1` stem LayerNorm,
   `downsample_layers.I.0` LayerNorm + `downsample_layers.I.1` conv (I = 1..3),
   `stages.S.B.{dwconv,norm,pwconv1,pwconv2,gamma}` (pwconv = nn.Linear [out,in], gamma a plain
   [C] parameter), `norm` (final LayerNorm), `head`; written by
   `torch.save({"model": state_dict}, path)`. Before writing it, the script runs a forward pass
   written here from those names alone (torch.nn.functional, the official block order), and
   checks that it reproduces timm's logits: the renaming is verified, not assumed.

How to run
----------
    python -m venv venv && venv/bin/pip install torch==2.13.0 timm==1.0.29 safetensors numpy
    venv/bin/python tools/make_v1_fixture.py test/fixtures/reference/small_v1.safetensors

(CPU-only torch is enough: `--index-url https://download.pytorch.org/whl/cpu`.) It takes a
few seconds. The tensors are deterministic for a given torch version (fixed seed, float64);
only the order of the metadata keys in the safetensors header may vary between runs. It is
not part of `npm test`: the files it writes are committed, and test/v1.test.ts reads them.

torchvision
-----------
`import timm` needs torchvision: at module level for `torchvision.ops.misc.FrozenBatchNorm2d`
(timm/layers/create_norm.py, norm_act.py, utils/model.py) and, because timm.models imports
timm.data, for `torchvision.transforms` and `torchvision.datasets` (timm/data/*.py); FX feature
extraction (timm/layers/_fx.py) is optional. ConvNeXt's forward and backward use none of it.
Where the installed torchvision's C++ extension cannot load (e.g. a CUDA torchvision wheel next
to a CPU torch), `import torchvision` itself fails in torchvision/_meta_registrations.py
(`RuntimeError: operator torchvision::nms does not exist`: it registers fake kernels for ops
that the extension never defined), and so does `import timm`. Only in that case this script
puts two empty stand-in modules in `sys.modules` for `torchvision._meta_registrations` and
`torchvision._autograd_registrations` (the fake/autograd registrations of those missing C++
ops, nms, roi_align, ...), says so on stderr, records it in the metadata, and retries. The
rest is the real torchvision, which then reports `torchvision.extension._has_ops() == False`
and raises its own error if one of those ops is ever called. Nothing is uninstalled or
patched on disk; with a working torchvision the stand-ins are never used.
"""
import argparse
import json
import os
import platform
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

SEED = 20240613
CONFIG = dict(depths=(2, 2, 2, 2), dims=(16, 32, 48, 64), num_classes=10, ls_init_value=1e-6,
              conv_mlp=False, use_grn=False)


def _purge(prefixes):
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + '.') for p in prefixes):
            del sys.modules[name]


# torchvision modules that only register fake/autograd kernels for its C++ ops (see docstring).
STAND_INS = ('torchvision._meta_registrations', 'torchvision._autograd_registrations')


def import_timm():
    """Returns (timm, note): the note says whether the torchvision stand-ins were needed."""
    try:
        import timm
        return timm, 'real torchvision, no stand-ins'
    except Exception as timm_error:
        try:
            import torchvision  # noqa: F401
        except RuntimeError as tv_error:
            reason = f'{type(tv_error).__name__}: {tv_error}'.splitlines()[0]
            if 'torchvision::' not in reason:
                raise
        else:
            raise timm_error  # torchvision imports: timm failed for another reason
    _purge(['timm', 'torchvision'])
    for name in STAND_INS:
        stand_in = types.ModuleType(name)
        stand_in.__doc__ = 'empty stand-in from tools/make_v1_fixture.py: torchvision C++ ops unavailable'
        sys.modules[name] = stand_in
    print(f'note: torchvision does not import ({reason}): its C++ extension did not load. Using empty '
          f'stand-ins for {", ".join(STAND_INS)} (fake/autograd registrations of those ops); '
          'ConvNeXt does not use them.', file=sys.stderr)
    import torchvision
    import timm
    assert not torchvision.extension._has_ops()
    return timm, (f'torchvision {torchvision.__version__} imported with empty stand-ins for '
                  f'{", ".join(STAND_INS)} ({reason})')


def randomise(model, gen):
    """Seeded random float64 values, rounded to float32 and back, for every parameter."""
    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=gen, dtype=torch.float64)

    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = p.shape
            if name.endswith('.gamma'):
                sign = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
                v = sign * uniform(0.5, 1.5, shape)
            elif name.endswith('.bias'):
                v = 0.1 * randn(shape)
            elif p.dim() == 1:  # LayerNorm weights (stem.1, downsample.0, blocks' norm, head.norm)
                v = 1.0 + 0.2 * randn(shape)
            else:  # conv / linear weights: N(0, 1/fan_in)
                fan_in = int(np.prod(shape[1:]))
                v = randn(shape) / fan_in ** 0.5
            p.copy_(v.float().double())


def official_state_dict(timm_sd):
    """timm ConvNeXt V1 names -> facebookresearch/ConvNeXt names (same tensors and layouts)."""
    out = {}
    for k, v in timm_sd.items():
        parts = k.split('.')
        if parts[0] == 'stem':
            n = f'downsample_layers.0.{parts[1]}.{parts[2]}'
        elif parts[0] == 'stages' and parts[2] == 'downsample':
            n = f'downsample_layers.{parts[1]}.{parts[3]}.{parts[4]}'
        elif parts[0] == 'stages' and parts[2] == 'blocks':
            s, b, rest = parts[1], parts[3], '.'.join(parts[4:])
            rest = {'conv_dw.weight': 'dwconv.weight', 'conv_dw.bias': 'dwconv.bias',
                    'norm.weight': 'norm.weight', 'norm.bias': 'norm.bias',
                    'mlp.fc1.weight': 'pwconv1.weight', 'mlp.fc1.bias': 'pwconv1.bias',
                    'mlp.fc2.weight': 'pwconv2.weight', 'mlp.fc2.bias': 'pwconv2.bias',
                    'gamma': 'gamma'}[rest]
            n = f'stages.{s}.{b}.{rest}'
        elif parts[0] == 'head' and parts[1] in ('norm', 'fc'):
            n = ('norm.' if parts[1] == 'norm' else 'head.') + parts[2]
        else:
            raise KeyError(f'unexpected timm parameter {k}')
        assert n not in out, n
        out[n] = v
    return out


def official_forward(sd, x, depths):
    """The official V1 forward pass, written from the official names (not timm's modules)."""
    def ln_channels_first(x, pre):
        u = x.mean(1, keepdim=True)
        s = (x - u).pow(2).mean(1, keepdim=True)
        x = (x - u) / torch.sqrt(s + 1e-6)
        return sd[pre + '.weight'][:, None, None] * x + sd[pre + '.bias'][:, None, None]

    for i in range(4):
        if i == 0:
            x = F.conv2d(x, sd['downsample_layers.0.0.weight'], sd['downsample_layers.0.0.bias'], stride=4)
            x = ln_channels_first(x, 'downsample_layers.0.1')
        else:
            x = ln_channels_first(x, f'downsample_layers.{i}.0')
            x = F.conv2d(x, sd[f'downsample_layers.{i}.1.weight'], sd[f'downsample_layers.{i}.1.bias'], stride=2)
        for b in range(depths[i]):
            p = f'stages.{i}.{b}.'
            y = F.conv2d(x, sd[p + 'dwconv.weight'], sd[p + 'dwconv.bias'], padding=3, groups=x.shape[1])
            y = y.permute(0, 2, 3, 1)
            y = F.layer_norm(y, (y.shape[-1],), sd[p + 'norm.weight'], sd[p + 'norm.bias'], 1e-6)
            y = F.linear(y, sd[p + 'pwconv1.weight'], sd[p + 'pwconv1.bias'])
            y = F.gelu(y)
            y = F.linear(y, sd[p + 'pwconv2.weight'], sd[p + 'pwconv2.bias'])
            y = sd[p + 'gamma'] * y
            x = x + y.permute(0, 3, 1, 2)
    x = F.layer_norm(x.mean([-2, -1]), (x.shape[1],), sd['norm.weight'], sd['norm.bias'], 1e-6)
    return F.linear(x, sd['head.weight'], sd['head.bias'])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', help='the .safetensors to write, e.g. test/fixtures/reference/small_v1.safetensors; '
                                'the official .pt goes next to it as <stem>_official.pt')
    args = ap.parse_args()
    if not args.out.endswith('.safetensors'):
        ap.error('out must end in .safetensors')
    official_path = args.out[:-len('.safetensors')] + '_official.pt'

    timm, tv_note = import_timm()
    from timm.models.convnext import ConvNeXt

    torch.manual_seed(SEED)
    model = ConvNeXt(**CONFIG).double().eval()
    names = [n for n, _ in model.named_parameters()]
    assert sum('grn' in n for n in names) == 0 and sum(n.endswith('.gamma') for n in names) == sum(CONFIG['depths']), names
    assert set(model.state_dict().keys()) == set(names), 'no buffers expected'
    assert not any(type(m).__module__.startswith('torchvision') for m in model.modules())

    gen = torch.Generator().manual_seed(SEED)
    randomise(model, gen)
    inputs = [torch.randn(2, 3, 64, 64, generator=gen, dtype=torch.float64).float().double(),
              torch.randn(1, 3, 96, 128, generator=gen, dtype=torch.float64).float().double()]
    R = torch.randn(2, CONFIG['num_classes'], generator=gen, dtype=torch.float64).float().double()

    t = {}
    for n, p in model.named_parameters():
        t['param.' + n] = p.detach()
    official_inputs = []
    with torch.no_grad():
        for i, x in enumerate(inputs):
            t[f'input.{i}.pixel_values'] = x
            h = model.stem(x)
            for s, stage in enumerate(model.stages):
                h = stage(h)
                t[f'output.{i}.stage{s}'] = h
            pre = model.forward_head(model.norm_pre(h), pre_logits=True)
            logits = model.head.fc(pre)
            assert torch.allclose(logits, model(x), rtol=0, atol=1e-12), 'staged forward = model(x)'
            t[f'output.{i}.pre_logits'] = pre
            t[f'output.{i}.logits'] = logits
            official_inputs.append((x, logits))

    x0 = inputs[0].clone().requires_grad_(True)
    model.zero_grad(set_to_none=True)
    (model(x0) * R).sum().backward()
    t['grad.R'] = R
    for n, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().max() > 0, n
        t['grad.' + n] = p.grad.detach()
    t['grad.input'] = x0.grad.detach()

    # The official naming, checked by a forward pass written from those names.
    timm_sd = {n: p.detach() for n, p in model.named_parameters()}
    off64 = official_state_dict(timm_sd)
    for x, logits in official_inputs:
        with torch.no_grad():
            err = (official_forward(off64, x, CONFIG['depths']) - logits).abs().max().item()
        assert err <= 1e-10 * logits.abs().max().item(), f'official-named forward differs from timm by {err}'

    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in sorted(t.items())}
    meta = {
        'format': 'timm',
        'model': 'timm.models.convnext.ConvNeXt (ConvNeXt V1 block: LayerScale gamma, no GRN)',
        'config': json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in CONFIG.items()}),
        'depths': json.dumps(list(CONFIG['depths'])),
        'dims': json.dumps(list(CONFIG['dims'])),
        'num_classes': str(CONFIG['num_classes']),
        'conv_mlp': 'false',
        'block': 'v1',
        'seed': str(SEED),
        'note': 'param.* are timm state_dict tensors (random values); input.* NCHW; output.* reference; '
                'computed in float64 from the float32 values stored here',
        'grad_note': 'grad.* = d(sum(logits(input.0) * grad.R))/d(param) in timm names; grad.input wrt pixels',
        'generator': 'tools/make_v1_fixture.py',
        'versions': json.dumps({'python': platform.python_version(), 'torch': torch.__version__,
                                'timm': timm.__version__, 'numpy': np.__version__,
                                'safetensors': __import__('safetensors').__version__}),
        'torchvision': tv_note,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    os.chmod(args.out, 0o644)

    official = {k: v.to(torch.float32).contiguous().clone() for k, v in official_state_dict(timm_sd).items()}
    torch.save({'model': official}, official_path)
    print(f'wrote {args.out} ({os.path.getsize(args.out)} bytes, {len(tensors)} tensors) and '
          f'{official_path} ({os.path.getsize(official_path)} bytes, {len(official)} tensors); '
          f'torch {torch.__version__}, timm {timm.__version__}; torchvision: {tv_note}')


if __name__ == '__main__':
    main()
