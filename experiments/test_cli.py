"""Every experiments/ command held to train.py's standard for bad input: one line on stderr naming the program and
the flag, exit 2, no traceback, nothing written; a missing optional package is one line saying how to install it;
a run that a kill cut short is redone, never reused. In-process (main(argv)): no subprocess import cost."""
import json
import os
import subprocess
import sys

import pytest

import bench
import bench_fid
import families
import floor
import inception_reference
import precision
import run
import unet_reference
from conftest import exit_code, snapshot

MAINS = {'run.py': run.main, 'floor.py': floor.main, 'families.py': families.main, 'bench.py': bench.main,
         'bench_fid.py': bench_fid.main, 'precision.py': precision.main, 'unet_reference.py': unet_reference.main,
         'inception_reference.py': inception_reference.main}
REFERENCES = {'unet_reference.py': ('torchcfm', 'pip install torchcfm'),
              'inception_reference.py': ('pytorch_fid', 'pip install --no-deps pytorch-fid')}
BAD = [  # (program, argv with {tmp}, phrase of the one line)
    ('run.py', ['--runs', '{tmp}/file.txt'], '--runs {tmp}/file.txt is a file, not a folder'),
    ('run.py', ['--out', '{tmp}/file.txt'], '--out {tmp}/file.txt is a file, not a folder'),
    ('run.py', ['--runs', '{tmp}/file.txt/runs'], 'cannot create that folder'),
    ('run.py', ['--images', '{tmp}/absent'], '--images {tmp}/absent is not found'),
    ('run.py', ['--images', '{tmp}/file.txt'], '--images {tmp}/file.txt is a file, not a folder'),
    ('run.py', ['--only', 'images'], '--only images needs --images'),
    ('run.py', ['--workers', '0'], 'argument --workers: must be an integer >= 1, got 0'),
    ('run.py', ['--workers', '-3'], 'argument --workers: must be an integer >= 1, got -3'),
    ('run.py', ['--only', 'nope'], "argument --only: invalid choice: 'nope'"),
    ('floor.py', ['--only', 'nope'], "argument --only: invalid choice: 'nope'"),
    ('floor.py', ['--jobs', '0'], 'argument --jobs: must be an integer >= 1, got 0'),
    ('floor.py', ['--only', 'capacity', '--teacher', '{tmp}/absent.pt'], '--teacher {tmp}/absent.pt is not found'),
    ('floor.py', ['--only', 'metric', 'capacity', '--teacher', '{tmp}/file.txt', '--teacher-uncond', '{tmp}'],
     '--teacher-uncond {tmp} is not a file'),
    ('floor.py', ['--only', 'ablate', '--teacher', '{tmp}'], '--teacher {tmp} is not a file'),
    ('floor.py', ['--only', 'metric', '--out', '{tmp}/file.txt'], '--out {tmp}/file.txt is a file, not a folder'),
    ('floor.py', ['--only', 'metric', '--runs', '{tmp}/file.txt'], '--runs {tmp}/file.txt is a file, not a folder'),
    ('families.py', ['--runs', '{tmp}/file.txt'], '--runs {tmp}/file.txt is a file, not a folder'),
    ('bench.py', ['--image-size', '12'], 'attention_resolutions=8: no level has size 8 (sizes 12, 6)'),
    ('bench.py', ['--batch-size', '0'], 'argument --batch-size: must be positive, got 0'),
    ('bench.py', ['--mode', 'teacher', '--batch-size', '0'], 'argument --batch-size: must be positive, got 0'),
    ('bench.py', ['--peak', '-5'], 'argument --peak: must be positive, got -5.0'),
    ('bench.py', ['--peak', '0'], 'argument --peak: must be positive, got 0.0'),
    ('bench.py', ['--channel-mult', '1', '0'], 'argument --channel-mult: must be positive, got 0'),
    ('bench.py', ['--attn', '3'], 'no level has size 3'),
    ('bench_fid.py', ['--repeats', '0'], 'argument --repeats: must be an integer >= 1, got 0'),
    ('precision.py', ['--channels', '0'], 'argument --channels: must be an integer >= 1, got 0'),
    ('precision.py', ['--channels', '2'], '--channels 2: num_channels=2'),
    ('precision.py', ['--batch', '-1'], 'argument --batch: must be an integer >= 1, got -1'),
    *[(program, argv, phrase) for program in REFERENCES for argv, phrase in [
        (['--nope'], 'unrecognized arguments: --nope'),
        (['--out', '{tmp}/file.txt'], '--out {tmp}/file.txt exists: the reference is made once'),
        (['--out', '{tmp}/absent/ref.npz'], '--out {tmp}/absent/ref.npz: no folder {tmp}/absent')]],
]


@pytest.mark.parametrize('program, argv, phrase', BAD, ids=[f'{p}:{" ".join(a)}' for p, a, _ in BAD])
def test_bad_flag_is_one_line_exit_2_naming_program_and_flag_and_writes_nothing(program, argv, phrase, tmp_path,
                                                                                 capsys, monkeypatch):
    (tmp_path / 'file.txt').write_text('keep\n')
    monkeypatch.chdir(tmp_path)                                 # default --runs / --out are relative: none created
    before = snapshot(tmp_path)
    capsys.readouterr()
    code = exit_code(MAINS[program])(*[a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and 'Traceback' not in err, err
    assert err.startswith(f'{program}: error: ') and phrase.format(tmp=tmp_path) in err, err
    assert snapshot(tmp_path) == before and sorted(os.listdir(tmp_path)) == ['file.txt']


def test_floor_md_is_not_replaced_by_a_refused_run(tmp_path):
    # before: --only NAME with an unknown name ran nothing, exited 0 and replaced floor.md by an empty file (a write
    # that fails halfway is fid.write_atomic's: test_fid.py)
    (tmp_path / 'floor.md').write_text('the measured floor\n')
    assert exit_code(floor.main)('--only', 'nope', '--out', tmp_path) == 2
    assert (tmp_path / 'floor.md').read_text() == 'the measured floor\n' and os.listdir(tmp_path) == ['floor.md']


def test_run_redoes_a_job_whose_last_start_did_not_end_and_reuses_a_finished_one(tmp_path):
    # RUNS/<name>.done says the job ended after its last start: a job killed (here: failed) after an earlier
    # success with the same command is redone, whatever its metrics.jsonl holds (none, whole lines, a cut line)
    ok, fails = ['-c', 'print("ran")'], ['-c', 'import sys; sys.exit(3)']
    for name, argv in (('earlier', fails), ('whole', ok)):
        os.makedirs(tmp_path / name)
        (tmp_path / name / 'metrics.jsonl').write_text('{"step": 1}\n')
        (tmp_path / f'{name}.done').write_text(json.dumps(dict(seconds=1.0, argv=argv)))   # an earlier success
    (tmp_path / 'cutdone.done').write_text('{"seconds": 1.0, "ar')  # a .done cut by a kill: rerun, no traceback
    runner = run.Runner(str(tmp_path), 1)
    runner.add('dep', ok)                                       # no .done: runs, so 'earlier' runs again too
    runner.add('earlier', fails, ['dep'])
    with pytest.raises(SystemExit, match='1 job.s. failed.*: earlier'):
        runner.run()
    assert not (tmp_path / 'earlier.done').exists()            # the earlier success no longer stands for this run
    runner = run.Runner(str(tmp_path), 1)
    for name in ('dep', 'whole', 'cutdone'):
        runner.add(name, ok)
    runner.add('earlier', ok, ['dep'])
    done = runner.run()
    assert done['dep'] != 1.0 and done['whole'] == 1.0 and done['cutdone'] != 1.0 and done['earlier'] != 1.0
    assert (tmp_path / 'earlier.log').read_text() == 'ran\n' and not (tmp_path / 'whole.log').exists()
    assert json.loads((tmp_path / 'cutdone.done').read_text())['argv'] == ok


FAMILY_ROWS = [dict(phase='teacher', step=100), dict(phase='distill', step=0), dict(phase='distill', step=300)]


def test_families_reuses_a_finished_run_and_redoes_one_whose_last_line_a_kill_cut(tmp_path, monkeypatch, capsys):
    text = ''.join(json.dumps(r) + '\n' for r in FAMILY_ROWS)
    out = tmp_path / 'fm'
    os.makedirs(out)
    for cut in range(len(text) + 1):                            # a kill at every byte of the last run's record
        (out / 'metrics.jsonl').write_text(text[:cut])
        assert families.finished(str(out)) == (cut == len(text)), cut
    (out / 'metrics.jsonl').write_text('{"phase": "dist\n' + text)      # a line that is not JSON: redone, one line
    assert not families.finished(str(out))
    assert 'metrics.jsonl: line 1 is not JSON' in capsys.readouterr().out
    assert not families.finished(str(tmp_path / 'absent'))

    calls = []

    def fake_train(cmd, **kwargs):                               # train.py's run, not run: its record is written
        calls.append(cmd)
        os.makedirs(out, exist_ok=True)
        (out / 'metrics.jsonl').write_text(text)
        return subprocess.CompletedProcess(cmd, 0)
    monkeypatch.setattr(families.subprocess, 'run', fake_train)
    (out / 'metrics.jsonl').write_text(text[:-1])               # the last line cut: redone from a clean folder
    (out / 'stale.png').write_text('from the killed run')
    families.run('fm', str(out))
    assert len(calls) == 1 and '--interpolant' in calls[0] and not (out / 'stale.png').exists()
    (out / 'wall_seconds.txt').write_text('42\n')
    assert families.run('fm', str(out)) == 42.0 and len(calls) == 1      # finished: reused, not run again


def test_families_failed_run_is_one_line_naming_its_log(tmp_path, monkeypatch):
    out = str(tmp_path / 'vp')

    def failing_train(cmd, **kwargs):                            # train.py made its folder, then failed
        os.makedirs(out)
        return subprocess.CompletedProcess(cmd, 3)
    monkeypatch.setattr(families.subprocess, 'run', failing_train)
    with pytest.raises(SystemExit) as e:
        families.run('vp', out)
    assert e.value.code == f'families.py: the vp run failed (exit 3), see {out}.log'
    assert not os.path.exists(os.path.join(out, 'wall_seconds.txt'))


@pytest.mark.parametrize('program', REFERENCES)
def test_reference_script_without_its_package_is_one_line_saying_how_to_install_it(program, tmp_path, capsys,
                                                                                   monkeypatch):
    package, install = REFERENCES[program]
    monkeypatch.setitem(sys.modules, package, None)             # import PACKAGE -> ImportError, installed or not
    try:
        code = exit_code(MAINS[program])('--out', tmp_path / 'ref.npz')
    except ImportError as e:                                    # before: a traceback
        code = f'ImportError: {e}'
    err = capsys.readouterr().err
    script = {'unet_reference.py': unet_reference, 'inception_reference.py': inception_reference}[program]
    assert isinstance(code, str) and code.startswith(f'{program}: error: needs {package}, which is not installed '
                                                     'here (') and '\n' not in code, code
    assert code.endswith(f'; in a scratch venv: {script.INSTALL}') and install in script.INSTALL, code
    assert err == '' and os.listdir(tmp_path) == []
