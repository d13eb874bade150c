"""score_restorations.py: its numbers are couplings.restoration_metrics of the same arrays, read in sample.py's
layout (row i K + j: input i); bad input is one line, exit 2, nothing written. That its inputs and numbers are
train.py's own is test_sample.py's (it needs a coupled train.py run)."""
import json
import os

import numpy as np
import pytest
import torch

import couplings
import score_restorations
from conftest import exit_code, snapshot

run = exit_code(score_restorations.main)


@pytest.mark.parametrize('name', ['toy-noise0.5', 'toy-proj0.1'])
def test_score_is_restoration_metrics_of_the_same_arrays_in_sample_pys_layout(name, tmp_path, capsys):
    coupling, g = couplings.make_coupling(name), torch.Generator().manual_seed(0)
    x0 = 2 * torch.randn(6, 2, generator=g)
    c = coupling.corrupt(x0, g)
    samples = c[:, None] + 0.3 * torch.randn(6, 4, 2, generator=g)   # input i's 4 samples around it, i.e. far apart
    np.savez(tmp_path / 'samples.npz', arr_0=samples.flatten(0, 1).numpy(), inputs=c.numpy())
    capsys.readouterr()
    assert run(tmp_path / 'samples.npz', '--coupling', name) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = couplings.restoration_metrics(coupling, x0, c, samples, torch.Generator().manual_seed(7))
    assert {k: printed[k] for k in expected} == expected                # cswd, mode_tv, off_mode
    assert (printed['inputs'], printed['per_input'], printed['coupling'], printed['seed']) == (6, 4, name, 7)
    # the other order of the rows (sample j of every input, then j + 1) is another score, not this one
    np.savez(tmp_path / 'other.npz', arr_0=samples.transpose(0, 1).flatten(0, 1).numpy(), inputs=c.numpy())
    assert run(tmp_path / 'other.npz', '--coupling', name) == 0
    assert json.loads(capsys.readouterr().out)['cswd'] > 2 * expected['cswd']


def test_mode_error_split_hand_values(tmp_path, capsys):
    # one input nearer mode 0 than mode 1 (mode 0 the heaviest), 4 samples: 2 on mode 0's component, 1 on mode 1's,
    # 1 a trail point 0.4 of the way from mode 1 to mode 0 (nearest mode 1, inside neither component)
    coupling = couplings.make_coupling('toy-noise0.5')
    m = couplings.toy_means()
    c = (0.55 * m[0] + 0.45 * m[1])[None]
    weights, means, _ = coupling.posterior(c)
    weights = weights.exp()[0]
    assert weights.argmax() == 0 and weights[1] > 0.2
    trail = means[0, 1] + 0.4 * (means[0, 0] - means[0, 1])
    samples = torch.stack([means[0, 0], means[0, 0], means[0, 1], trail])[None]
    inside = torch.zeros(8).index_put_((torch.tensor([0, 1]),), torch.tensor([2 / 3, 1 / 3]))
    expected = float(0.5 * (inside - weights).abs().sum())
    split = score_restorations.mode_error_split(coupling, c, samples)
    assert split == pytest.approx(dict(mode_tv_inside=expected, trails_to_light=0.25), rel=1e-6)
    # the trail on mode 0's side is no light mode's; it is outside either way (off_mode 1/4)
    near0 = means[0, 0] + 0.4 * (means[0, 1] - means[0, 0])
    assert score_restorations.mode_error_split(coupling, c, samples.index_put((torch.tensor([0]), torch.tensor([3])),
                                                                              near0))['trails_to_light'] == 0
    assert couplings.off_mode(coupling, c, samples) == 0.25
    np.savez(tmp_path / 'samples.npz', arr_0=samples[0].numpy(), inputs=c.numpy())
    capsys.readouterr()
    assert run(tmp_path / 'samples.npz', '--coupling', 'toy-noise0.5') == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed['mode_tv_inside'] == pytest.approx(expected, rel=1e-6) and printed['trails_to_light'] == 0.25


def test_write_inputs_writes_the_corrupted_held_out_points_once(tmp_path, capsys):
    assert run('--write-inputs', tmp_path / 'c.npz', '--coupling', 'toy-proj0.1') == 0
    with np.load(tmp_path / 'c.npz') as data:
        c, x0 = data['arr_0'], data['x0']
    assert c.shape == x0.shape == (32, 2) and c.dtype == np.float32
    assert (c[:, 1] == 0).all() and 0.05 < np.abs(c[:, 0] - x0[:, 0]).mean() < 0.15   # toy-proj0.1: x0_1 + 0.1 xi
    assert run('--write-inputs', tmp_path / 'c.npz', '--coupling', 'toy-proj0.1') == 2   # never replaced


BAD = {  # name -> (argv with {tmp}, phrase of the one line)
    'nothing_to_score': ([], "give sample.py's samples.npz to score (or --write-inputs PATH.npz"),
    'samples_not_found': (['{tmp}/absent.npz'], '{tmp}/absent.npz not found'),
    'unconditional_samples': (['{tmp}/plain/samples.npz', '--coupling', 'toy-noise0.5'],
                              'holds arr_0: sample.py --inputs writes arr_0 and inputs'),
    'rows_not_k_per_input': (['{tmp}/odd/samples.npz'], 'arr_0 (7, 2) and inputs (2, 2) are not K samples'),
    'non_finite': (['{tmp}/nan/samples.npz', '--coupling', 'toy-noise0.5'], 'holds non-finite values'),
    'image_coupling_recorded': (['{tmp}/sr2/samples.npz'], 'restores --coupling sr2; the exact posterior is known '
                                'for the toy couplings only (toy-noise0.5, toy-proj0.1)'),
    'coupling_unknown': (['{tmp}/plain/samples.npz'], '--coupling: give one of toy-noise0.5, toy-proj0.1'),
    'coupling_contradicts_sample_json': (['{tmp}/odd/samples.npz', '--coupling', 'toy-proj0.1'],
                                         '--coupling toy-proj0.1, but {tmp}/odd/samples.npz restores --coupling '
                                         'toy-noise0.5 (its sample.json)'),
    'image_coupling_given': (['{tmp}/odd/samples.npz', '--coupling', 'sr2'], "argument --coupling: invalid choice"),
    'write_inputs_over_a_file': (['--write-inputs', '{tmp}/plain/samples.npz', '--coupling', 'toy-noise0.5'],
                                 'exists: choose another file'),
    'write_inputs_without_coupling': (['--write-inputs', '{tmp}/c.npz'], '--write-inputs needs --coupling'),
    'write_inputs_and_samples': (['{tmp}/odd/samples.npz', '--write-inputs', '{tmp}/c.npz'],
                                 'give no SAMPLES with it'),
    'write_inputs_not_npz': (['--write-inputs', '{tmp}/c.txt', '--coupling', 'toy-noise0.5'], 'ending in .npz'),
    'write_inputs_nowhere': (['--write-inputs', '{tmp}/absent/c.npz', '--coupling', 'toy-noise0.5'],
                             'is not writable'),
}


@pytest.mark.parametrize('name', BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(name, tmp_path, capsys):
    folders = dict(plain=(dict(arr_0=np.ones((4, 2), np.float32)), None),
                   odd=(dict(arr_0=np.ones((7, 2), np.float32), inputs=np.ones((2, 2), np.float32)), 'toy-noise0.5'),
                   nan=(dict(arr_0=np.full((4, 2), np.nan, np.float32), inputs=np.ones((2, 2), np.float32)), None),
                   sr2=(dict(arr_0=np.ones((4, 2), np.float32), inputs=np.ones((2, 2), np.float32)), 'sr2'))
    for folder, (arrays, coupling) in folders.items():
        os.makedirs(tmp_path / folder)
        np.savez(tmp_path / folder / 'samples.npz', **arrays)
        if coupling:
            (tmp_path / folder / 'sample.json').write_text(json.dumps(dict(coupling=coupling)))
    argv, phrase = BAD[name]
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = run(*[a.format(tmp=tmp_path) for a in argv])
    captured = capsys.readouterr()
    assert code == 2 and len(captured.err.strip().splitlines()) == 1 and captured.out == '', captured.err
    assert captured.err.startswith('score_restorations.py: error: ') and phrase.format(tmp=tmp_path) in captured.err
    assert snapshot(tmp_path) == before
