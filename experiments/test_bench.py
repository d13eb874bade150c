"""bench.py's check: one iteration of train.py's updates (Algorithm 1: K fake_update on RealUM, Def. 2, then one
generator_update on eq. 17) equals the naive loop written as the official RealUID code does it -- same losses,
generator gradient and updates from the same weights and seed. Tiny U-Net, a few seconds; not the timing.
Tolerances are bench.RTOL's, which state why they are what they are. Also: its one-line usage errors, --profile.
"""
import copy

import pytest
import torch

import bench

pytestmark = pytest.mark.usefixtures('one_thread')
TINY = ['--image-size', '8', '--batch-size', '4', '--channels', '32', '--channel-mult', '1', '--attn', '8', '--k', '2']


@pytest.mark.parametrize('flags', [[], ['--cond'], ['--alpha', '1', '--beta', '1'], ['--amp', 'bf16']],
                         ids=['realuid', 'cond', 'uid-no-real-data', 'bf16'])
def test_train_updates_match_naive_official_loop(flags):
    args = bench.get_args(TINY + flags)
    passed, diffs = bench.check(*bench.build(args), args.amp, verbose=False)
    assert passed, diffs


def test_check_fails_on_a_wrong_coefficient():
    """The check has teeth: a naive loop with beta 0.9 instead of 0.96 (target scale 0.92 vs 0.98) must FAIL."""
    args = bench.get_args(TINY)
    ours, naive, batch = bench.build(args)
    naive.args = copy.copy(naive.args)
    naive.args.beta = 0.9
    passed, diffs = bench.check(ours, naive, batch, verbose=False)
    assert not passed
    assert diffs['fake losses, K steps'][0] > 1e-2


@pytest.mark.parametrize('argv', [['--k', '0'], ['--iters', 'x'], ['--profile', '-1'], ['--device', 'tpu']]
                         + ([['--device', 'cuda']] if not torch.cuda.is_available() else []))
def test_bad_flags_are_one_line_and_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.get_args(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith('bench.py: error: ') and len(err.strip().splitlines()) == 1, err


def test_profile_prints_where_one_iteration_goes(capsys):
    bench.main(TINY + ['--iters', '1', '--warm', '0', '--profile', '5'])
    out = capsys.readouterr().out
    assert 'check: PASS' in out and 'ratio naive/ours' in out
    table = out[out.index('profile of one iteration of ours, top 5 ops'):]
    assert 'aten::' in table and 'Self CPU time total' in table


def test_flops_and_fraction_of_peak_are_printed(capsys):
    # TFLOP/s next to s/iter, and the fraction of a peak (here --peak; on CUDA PEAK_TFLOPS by the device's name,
    # TF32 for fp32 runs); the count itself is checked against the forward's in the teacher-mode test below
    bench.main(TINY + ['--iters', '1', '--warm', '0', '--peak', '0.001'])
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith('flops: '))
    assert 'TFLOP per iteration of ours' in line and 'of cpu\'s 0.001 TFLOP/s (dense TF32, --peak)' in line, line


def test_teacher_mode_times_the_teacher_step_on_device_held_data(capsys):
    bench.main(['--mode', 'teacher', '--image-size', '8', '--batch-size', '8', '--channels', '32',
                '--channel-mult', '1',
                '--attn', '8', '--iters', '1', '--warm', '0'])
    out = capsys.readouterr().out
    assert '80 uint8 images held on the device' in out and 'steps/s (median of 1 blocks of 20 steps' in out
    flops = float(next(l for l in out.splitlines() if l.startswith('flops: ')).split()[1]) * 1e12
    # one UM step = forward + backward of the U-Net on 8 images: 3x the forward FLOPs (backward: 2x), give or take
    # the first conv's input gradient, which autograd skips
    torch.manual_seed(0)
    args = bench.get_args(['--image-size', '8', '--channels', '32', '--channel-mult', '1', '--attn', '8'])
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    net = bench.models.build_model(bench.unet_config(args))
    with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as counter:
        net(torch.rand(8), torch.randn(8, 3, 8, 8))
    assert 2.9 * counter.get_total_flops() < flops <= 3 * counter.get_total_flops()


def test_compiled_ours_passes_the_check_and_is_timed(monkeypatch, capsys):
    # --compile as gpu.sh runs it (models.compile_blocks on ours' three networks after the naive loop copied them),
    # with aot_eager instead of inductor to take seconds: the check passes, the compile time and the FLOPs are printed
    torch._dynamo.reset()
    real = bench.models.compile_blocks
    monkeypatch.setattr(bench.models, 'compile_blocks', lambda net: real(net, backend='aot_eager'))
    try:
        bench.main(TINY + ['--iters', '1', '--warm', '0', '--compile'])
    finally:
        torch._dynamo.reset()
    out = capsys.readouterr().out
    assert 'check: PASS' in out and "compile: the check's iteration of ours took" in out and 'flops: ' in out
