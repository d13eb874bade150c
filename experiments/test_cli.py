"""Every experiments/ command held to train.py's standard for bad input: one line on stderr naming the program and
the flag, exit 2, no traceback, nothing written; results replaced whole or not at all; a metrics.jsonl whose last
line a kill cut is an unfinished run. In-process (main(argv)): no subprocess import cost."""
import json
import os

import pytest

import bench
import bench_fid
import cli
import families
import floor
import precision
import run
from conftest import exit_code, snapshot

MAINS = {'run.py': run.main, 'floor.py': floor.main, 'families.py': families.main, 'bench.py': bench.main,
         'bench_fid.py': bench_fid.main, 'precision.py': precision.main}
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


def test_floor_md_is_not_replaced_by_a_refused_run_nor_a_failed_write(tmp_path, monkeypatch):
    # before: --only NAME with an unknown name ran nothing, exited 0 and replaced floor.md by an empty file
    (tmp_path / 'floor.md').write_text('the measured floor\n')
    assert exit_code(floor.main)('--only', 'nope', '--out', tmp_path) == 2
    assert (tmp_path / 'floor.md').read_text() == 'the measured floor\n'
    real_open = open

    def failing_open(path, mode='r', *args, **kwargs):         # a write that fails halfway (disk full)
        f = real_open(path, mode, *args, **kwargs)
        if 'w' in mode:
            f.write('half a fl')
            f.close()
            raise OSError(28, 'No space left on device')
        return f
    monkeypatch.setattr('builtins.open', failing_open)
    with pytest.raises(OSError):
        cli.write_text(str(tmp_path / 'floor.md'), 'new\n')
    monkeypatch.undo()
    assert (tmp_path / 'floor.md').read_text() == 'the measured floor\n'
    assert sorted(os.listdir(tmp_path)) == ['floor.md']          # no .tmp left behind


def test_metrics_reader_leaves_out_a_cut_last_line_and_refuses_a_bad_earlier_one(tmp_path):
    rows = [dict(phase='teacher', step=0), dict(phase='distill', step=300)]
    text = ''.join(json.dumps(r) + '\n' for r in rows)
    path = tmp_path / 'metrics.jsonl'
    for cut in range(len(text) + 1):                            # a kill at every byte
        path.write_text(text[:cut])
        complete = text[:cut].count('\n')
        assert cli.read_metrics(str(path)) == rows[:complete], cut
        assert cli.is_cut(str(path)) == (cut > 0 and text[cut - 1] != '\n'), cut
    path.write_text('{"cut\n' + text)
    with pytest.raises(ValueError, match='line 1 is not JSON'):
        cli.read_metrics(str(path))
    assert cli.read_metrics(str(tmp_path / 'absent.jsonl')) is None


def test_run_redoes_a_reused_run_whose_metrics_jsonl_was_cut(tmp_path):
    # run.py's docstring: a finished job (its .done) is reused; one whose metrics.jsonl has a cut last line is not
    argv = ['-c', 'print("ran")']
    for name, metrics in (('whole', '{"step": 1}\n'), ('cut', '{"step": 1}\n{"st')):
        os.makedirs(tmp_path / name)
        (tmp_path / name / 'metrics.jsonl').write_text(metrics)
        (tmp_path / f'{name}.done').write_text(json.dumps(dict(seconds=1.0, argv=argv)))
    (tmp_path / 'cutdone.done').write_text('{"seconds": 1.0, "ar')  # a .done cut by a kill: rerun, no traceback
    runner = run.Runner(str(tmp_path), 1)
    for name in ('whole', 'cut', 'cutdone'):
        runner.add(name, argv)
    done = runner.run()
    assert done['whole'] == 1.0 and done['cut'] != 1.0 and done['cutdone'] != 1.0    # reused / rerun
    assert (tmp_path / 'cut.log').read_text() == 'ran\n' and not (tmp_path / 'cut').exists()
    assert not (tmp_path / 'whole.log').exists()
