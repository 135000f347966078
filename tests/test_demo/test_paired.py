"""Differences paired by seed: the numbers, the verdicts, the report section and the tool."""
import dataclasses
import json
import os.path as osp
import subprocess
import sys

import pytest

import diffkd_mm
from diffkd_mm.demo.paired import paired_difference, paired_table
from diffkd_mm.demo.settings import BENCHMARK_VERSION, CONVERGED_SCHEDULES, SCHEDULE_KEYS

ROOT = osp.dirname(osp.dirname(osp.abspath(diffkd_mm.__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'paired_results.py')


def _run_tool(*args):
    """``paired_results.py ARGS`` in a fresh interpreter: its exit code, stdout and stderr."""
    return subprocess.run([sys.executable, TOOL, *args],
                          capture_output=True,
                          text=True,
                          timeout=300)


def _records(task, table):
    return [
        dict(task=task, seed=seed, method=method, metric='mAP', value=value)
        for method, per_seed in table.items() for seed, value in per_seed.items()
    ]


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    """d = (1, 2, 3): mean 2, std 1, t(0.975, 2) = 4.3027 -> 2 ± 4.3027 / sqrt(3)."""
    values = dict(a={0: 11.0, 1: 12.0, 2: 13.0, 5: 99.0}, b={0: 10.0, 1: 10.0, 2: 10.0})
    d = paired_difference('a', 'b', values)
    assert (d.n, d.mean) == (3, 2.0)  # seed 5 has no pair
    assert d.low == pytest.approx(2 - 4.302653 / 3**0.5, rel=1e-6)
    assert d.high == pytest.approx(2 + 4.302653 / 3**0.5, rel=1e-6)
    assert d.significant is False
    shifted = paired_difference('a', 'b', dict(a={0: 11.0, 1: 11.1, 2: 10.9}, b=values['b']))
    assert shifted.significant is True and shifted.low > 0
    one = paired_difference('a', 'b', dict(a={0: 11.0}, b={0: 10.0}))
    assert (one.n, one.mean, one.low, one.significant) == (1, 1.0, None, None)
    assert paired_difference('a', 'b', dict(a={0: 1.0}, b={1: 1.0})) is None


def test_table_compares_each_pair_once_and_says_which_way():
    records = _records(
        'det',
        dict(
            teacher={
                0: 30,
                1: 31,
                2: 29
            },
            student={
                0: 10,
                1: 11,
                2: 12
            },
            fitnet={
                0: 12,
                1: 13,
                2: 14.2
            },
            diffkd={
                0: 11,
                1: 12.1,
                2: 12.9
            }))
    rows = [
        line for line in paired_table(records, 'det') if line.startswith('| ') and ' - ' in line
    ]
    assert [row.split(' | ')[0]
            for row in rows] == ['| fitnet - student', '| diffkd - student', '| diffkd - fitnet']
    assert rows[0].endswith('| yes, above |') and rows[2].endswith('| yes, below |')
    one_seed = _records('det', dict(student={0: 10.0}, diffkd={0: 11.0}))
    assert paired_table(one_seed, 'det') == []  # the seed table already shows it


def test_a_diffkd_variant_is_also_compared_with_the_paper_diffkd():
    table = dict(
        student={s: 10.0
                 for s in range(3)},
        diffkd={s: 12.0 + s
                for s in range(3)},
        diffkd_pull={s: 13.0 + s
                     for s in range(3)},
        pkd_like={s: 11.0
                  for s in range(3)})
    rows = [
        line.split(' | ')[0] for line in paired_table(_records('det', table), 'det')
        if line.startswith('| ') and ' - ' in line
    ]
    assert '| diffkd_pull - diffkd' in rows
    assert '| pkd_like - diffkd' not in rows and '| diffkd - diffkd' not in rows


def test_shipped_records_give_the_paired_differences_the_docs_quote():
    out = _run_tool(osp.join(ROOT, 'docs', 'results', 'embedded_benchmark.json'))
    assert out.returncode == 0, out.stderr
    assert '| Student + DiffKD - Student + FitNet | 3 | -1.23 | [-1.87, -0.58] | yes, below |' \
        in out.stdout
    assert '| Student + DiffKD - Student + PKD | 3 | +1.43 | [-1.81, +4.68] | no |' in out.stdout


def test_tool_names_a_file_that_is_not_records(tmp_path):
    bad = tmp_path / 'x.json'
    bad.write_text('{"not": "records"}')
    out = _run_tool(str(bad))
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert f'paired_results.py: {bad} is not a records file of tools/run_demo.py' in out.stderr


def test_records_of_two_schedules_are_not_paired(tmp_path):
    short = dict(teacher_iters=500, student_iters=200, num_train=400, num_val=100)
    converged = dict(short, teacher_iters=4000, student_iters=4000, num_val=300)
    records = [
        dict(r, **(short if r['method'] == 'student' else converged))
        for r in _records('det', dict(student={
            0: 10.0,
            1: 11.0
        }, diffkd={
            0: 12.0,
            1: 12.5
        }))
    ]
    with pytest.raises(
            ValueError,
            match=r'the det records come from 2 schedules .*'
            r'student_iters=200.*student_iters=4000.*one schedule at a time'):
        paired_table(records, 'det')
    path = tmp_path / 'mixed.json'
    path.write_text(json.dumps(records))
    out = _run_tool(str(path))
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert 'the det records come from 2 schedules' in out.stderr


def test_shipped_records_say_their_schedule():
    with open(osp.join(ROOT, 'docs', 'results', 'embedded_benchmark.json')) as f:
        records = json.load(f)
    for r in records:
        assert (r['teacher_iters'], r['student_iters'], r['num_val']) == dict(
            det=(500, 200, 100), seg=(800, 300, 100))[r['task']], r


def test_records_of_two_benchmark_versions_or_a_run_given_twice_are_not_paired(tmp_path):
    values = dict(student={0: 10.0, 1: 11.0}, diffkd={0: 12.0, 1: 12.5})
    old = _records('det', values)  # the shipped records have no version: version 1
    new = [dict(r, benchmark_version=2) for r in _records('det', values)]
    with pytest.raises(
            ValueError, match=r'2 schedules or benchmark versions \(benchmark_version=1'):
        paired_table(old[:2] + new[2:], 'det')
    assert paired_table(new, 'det')  # one version: compared
    with pytest.raises(ValueError, match='two records of det seed 0 student: give each run once'):
        paired_table(new + new[:1], 'det')
    # The tool pairs the records of several files (seeds run apart), and refuses a run twice.
    first, second = tmp_path / 'a.json', tmp_path / 'b.json'
    first.write_text(json.dumps([r for r in new if r['seed'] == 0]))
    second.write_text(json.dumps([r for r in new if r['seed'] == 1]))
    out = _run_tool(str(first), str(second))
    assert out.returncode == 0, out.stderr
    assert '| Student (no KD) | 10.00 | 11.00 | 10.50 ± 0.71 | - |' in out.stdout  # seed table
    assert '| Student + DiffKD - Student (no KD) | 2 | +1.75 |' in out.stdout
    out = _run_tool(str(first), str(first))
    assert out.returncode == 1 and 'two records of det seed 0' in out.stderr


def test_shipped_converged_records_are_one_schedule_and_one_run_per_seed():
    """Each seed of the benchmark at convergence holds a teacher and one record per method,
    all of the converged schedule and the eighth-width benchmark (never mixed with others)."""
    with open(osp.join(ROOT, 'docs', 'results', 'converged_benchmark.json')) as f:
        records = json.load(f)
    assert records
    seeds = {}
    for r in records:
        sched = CONVERGED_SCHEDULES[r['task']]
        assert {key: r[key] for key in SCHEDULE_KEYS} == dataclasses.asdict(sched), r
        assert r['benchmark_version'] == BENCHMARK_VERSION, r
        seeds.setdefault((r['task'], r['seed']), []).append(r['method'])
    for key, methods in seeds.items():
        assert len(methods) == len(set(methods)), key
        assert {'teacher', 'student'} <= set(methods), key


def test_figure_draws_the_pairs_and_nothing_without_them(tmp_path):
    from diffkd_mm.demo.figures import paired_figure
    records = _records('det', dict(student={0: 10.0, 1: 11.0}, diffkd={0: 12.0, 1: 12.5}))
    path = tmp_path / 'paired.png'
    assert paired_figure(records, ['det'], str(path)) is True
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    one_seed = _records('det', dict(student={0: 10.0}, diffkd={0: 11.0}))
    assert paired_figure(one_seed, ['det'], str(tmp_path / 'none.png')) is False
    assert not (tmp_path / 'none.png').exists()


def test_tool_draws_a_new_picture_and_keeps_an_existing_one(tmp_path):
    records = tmp_path / 'records.json'
    records.write_text(
        json.dumps(_records('det', dict(student={
            0: 10.0,
            1: 11.0
        }, diffkd={
            0: 12.0,
            1: 12.5
        }))))
    picture = tmp_path / 'paired.png'
    out = _run_tool(str(records), '--plot', str(picture))
    assert out.returncode == 0, out.stderr
    assert f'paired differences drawn: {picture}' in out.stdout and picture.stat().st_size > 0
    picture.write_bytes(b'mine')
    out = _run_tool(str(records), '--plot', str(picture))
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert f'--plot {picture} exists; give a new file name' in out.stderr
    assert picture.read_bytes() == b'mine'


def test_shipped_converged_records_give_the_tables_the_docs_quote():
    """Five seeds per task, a teacher-student gap of at least 5 points on each, and every row of
    the seed and paired tables on the results page is what the tool prints from the records."""
    path = osp.join(ROOT, 'docs', 'results', 'converged_benchmark.json')
    with open(path) as f:
        records = json.load(f)
    for task in ('det', 'seg'):
        value = {(r['seed'], r['method']): r['value'] for r in records if r['task'] == task}
        seeds = sorted({seed for seed, _ in value})
        assert seeds == [0, 1, 2, 3, 4], task
        for seed in seeds:
            assert value[seed, 'teacher'] - value[seed, 'student'] >= 5, (task, seed)
    out = _run_tool(path)
    assert out.returncode == 0, out.stderr
    page = open(osp.join(ROOT, 'docs', 'results',
                         '2026-12-04_converged_benchmark_5seeds.md')).read()
    quoted = [
        line for line in page.splitlines()
        if line.startswith(('| Teacher |', '| Student')) and line.endswith('|')
    ]
    assert len(quoted) == 11 + 15  # 5 + 6 seed rows, 6 + 9 paired rows
    for line in quoted:
        assert line in out.stdout, line


def test_a_short_run_report_says_what_it_measures_and_shows_the_converged_benchmark(tmp_path):
    from diffkd_mm.demo.report import converged_reference
    lines = converged_reference('seg')
    text = '\n'.join(lines)
    assert text.startswith('**What this schedule measures.**')
    assert '| Student + DiffKD - Student + FitNet | 5 | -2.47 | [-4.54, -0.39] | yes, below |' \
        in lines
    only_words = converged_reference('seg', str(tmp_path / 'absent.json'))
    assert only_words == lines[:2]


def test_confirmation_records_give_the_tables_the_pages_quote():
    """The finalists chosen on held-out seeds, run once on the reported seeds 0-4 with the
    shipped records' teachers: every seed, paired and diagnostics row of their results pages is
    what the tool prints from the shipped records and theirs."""
    results = osp.join(ROOT, 'docs', 'results')
    confirmation = osp.join(results, 'confirmation_seeds0-4.json')
    with open(confirmation) as f:
        records = json.load(f)
    finalists = {('det', 'diffkd_pull'), ('det', 'diffkd_prematch'), ('seg', 'diffkd_kdproof'),
                 ('seg', 'diffkd_pull')}
    assert {(r['task'], r['method']) for r in records} == finalists
    for task, method in finalists:
        seeds = [r['seed'] for r in records if (r['task'], r['method']) == (task, method)]
        assert sorted(seeds) == [0, 1, 2, 3, 4], (task, method)
    assert all(len(r['diagnostics']) == 4 for r in records)
    out = _run_tool(osp.join(results, 'converged_benchmark.json'), confirmation)
    assert out.returncode == 0, out.stderr
    for page_name in ('2026-12-04_confirmation_det_seeds0-4.md',
                      '2026-12-05_confirmation_seg_seeds0-4.md'):
        page = open(osp.join(results, page_name)).read()
        quoted = [
            line for line in page.splitlines()
            if line.startswith(('| Teacher |', '| Student')) and line.endswith('|')
        ]
        # two seed rows, each finalist against 4 methods, 4 diagnostics rows each
        assert len(quoted) >= 2 + 2 * 4 + 2 * 4, page_name
        for line in quoted:
            assert line in out.stdout, (page_name, line)
