"""The demo's report, written from plain records: tables, loss curves, feature pictures."""
import json
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional

from ..fileio import atomic_copy, atomic_write_text
from .diagnostics_report import diagnostics_figure, diagnostics_table
from .figures import paired_figure, plot_curves
from .paired import paired_table
from .settings import CONVERGED_SCHEDULES, SCHEDULE_KEYS, DemoSettings, method_title

#: The benchmark at convergence shipped with the repository: 5 seeds per task, paired.
CONVERGED_RECORDS = osp.join(
    osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'docs', 'results',
    'converged_benchmark.json')
CONVERGED_PAGE = 'docs/results/2026-12-04_converged_benchmark_5seeds.md'


def distill_term(curves: Dict[str, list], method: str) -> Optional[List[float]]:
    """The matching term of a run per iteration: DiffKD's ``_kd`` terms, or the sum of the
    other methods' distillation losses. None for a run without distillation."""
    keys = [k for k in curves if k.startswith('distill.')]
    if method.startswith('diffkd'):
        keys = [k for k in keys if k.endswith('_kd')]
    else:
        keys = [k for k in keys if not k.endswith('_gate')]
    if not keys:
        return None
    return [sum(vals) for vals in zip(*(curves[k] for k in keys))]


def _mean_std(values: List[float]) -> str:
    if len(values) == 1:
        return f'{values[0]:.2f}'
    return f'{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}'


def task_table(records: List[dict], task: str) -> List[str]:
    """Markdown rows: one per method, a column per seed, the mean ± std, the gap closed and
    the median seconds per iteration."""
    rows = [r for r in records if r['task'] == task]
    seeds = sorted({r['seed'] for r in rows})
    methods = list(dict.fromkeys(r['method'] for r in rows))
    value = {(r['method'], r['seed']): r for r in rows}
    metric = rows[0]['metric']
    head = [
        '| model | ' + ' | '.join(f'seed {s}' for s in seeds) +
        f' | mean{" ± std" if len(seeds) > 1 else ""} | gap closed | s / iter |',
        '|---' * (len(seeds) + 4) + '|'
    ]
    student = [value[('student', s)]['value'] for s in seeds if ('student', s) in value]
    teacher = [value[('teacher', s)]['value'] for s in seeds if ('teacher', s) in value]
    gap = (statistics.mean(teacher) - statistics.mean(student)) if student and teacher else None
    for method in methods:
        vals = [value[(method, s)]['value'] for s in seeds if (method, s) in value]
        cells = [
            f'{value[(method, s)]["value"]:.2f}' if (method, s) in value else '-' for s in seeds
        ]
        closed = '-'
        if gap and method not in ('teacher', 'student'):
            closed = f'{(statistics.mean(vals) - statistics.mean(student)) / gap:+.0%}'
        times = [
            value[(method, s)].get('s_per_iter') for s in seeds
            if (method, s) in value and value[(method, s)].get('s_per_iter')
        ]
        spi = f'{statistics.median(times):.3f}' if times else '- (cached)'
        head.append(f'| {method_title(method)} | ' + ' | '.join(cells) +
                    f' | {_mean_std(vals)} | {closed} | {spi} |')
    return [f'{metric} (%) on the validation split of each seed.', ''] + head


#: What ``results.json`` keeps of each record (the curves and pictures stay in the report).
RECORD_KEYS = ('task', 'seed', 'method', 'metric', 'benchmark_version', *SCHEDULE_KEYS, 'value',
               's_per_iter')
#: Kept when a record has them: what trained the run, and the KD students' diagnostics (a few
#: numbers per run).
OPTIONAL_RECORD_KEYS = ('device', 'diagnostics')


def write_report(run_dir: str,
                 settings: DemoSettings,
                 records: List[dict],
                 total_sec: float,
                 resumed: bool = False) -> Dict[str, str]:
    """Write ``report.md``, ``results.json`` (the records, without curves) and the pictures
    into ``<run_dir>/report``.

    ``total_sec`` is the time of this run; ``resumed`` says it went on with an earlier run's
    folder, whose finished runs it reused (their time is not in ``total_sec``).

    Returns:
        dict: ``report`` and ``results``, the paths written.
    """
    out = osp.join(run_dir, 'report')
    os.makedirs(out, exist_ok=True)
    lines = [
        '# DiffKD demo: embedded detection and segmentation', '',
        f'Seeds {list(settings.seeds)}; each seed draws its own data and trains its own '
        'teacher, then every student on one schedule. ' +
        ('This run went on with an earlier one (its finished runs reused) and took '
         if resumed else 'The whole run took ') + f'{total_sec / 60:.1f} min.' +
        (f' Every distillation loss weight set to {settings.loss_weight}.'
         if settings.loss_weight is not None else ''), ''
    ]
    for task in settings.tasks:
        sched = settings.schedules[task]
        lines += [
            f'## {task}', '', f'Teacher {sched.teacher_iters} iterations, every student '
            f'{sched.student_iters}; {sched.num_train} training and {sched.num_val} '
            'validation images. s / iter: median seconds per training iteration '
            '(after 5 warm-up iterations), median over seeds.', '', *task_table(records, task), ''
        ]
        paired = paired_table(records, task, method_title)
        lines += paired + [''] if paired else []
        if sched != CONVERGED_SCHEDULES[task]:
            lines += converged_reference(task)
        name = f'{task}_paired.png'
        if paired_figure(records, [task], osp.join(out, name)):
            lines += [f'![paired differences]({name})', '']
        diagnostics = diagnostics_table(records, task)
        if diagnostics:
            lines += ['### Where the KD signal goes', '', *diagnostics, '']
            name = f'{task}_diagnostics.png'
            if diagnostics_figure(records, task, osp.join(out, name)):
                lines += [f'![KD signal diagnostics]({name})', '']
        runs = {
            r['method']: r
            for r in records if r['task'] == task and r['seed'] == settings.seeds[0]
        }
        lines += _pictures(out, task, runs)
    path = osp.join(out, 'report.md')
    atomic_write_text(path, '\n'.join(lines))
    results = osp.join(out, 'results.json')
    plain = [
        dict({k: r[k]
              for k in RECORD_KEYS}, **{k: r[k]
                                        for k in OPTIONAL_RECORD_KEYS if k in r}) for r in records
    ]
    atomic_write_text(results, json.dumps(plain, indent=1) + '\n')
    return dict(report=path, results=results)


def converged_reference(task: str, path: str = CONVERGED_RECORDS) -> List[str]:
    """What a run on a shorter schedule measures, and the shipped benchmark at convergence's
    paired table of ``task`` beside it (when the checkout has its records)."""
    lines = [
        '**What this schedule measures.** The students train far from convergence here: the '
        'table ranks how fast each method starts to help, not where it ends. The benchmark at '
        'convergence (`--schedule converged`, teachers and students 2000 iterations, 5 seeds, '
        f'{CONVERGED_PAGE}) is what compares the methods.', ''
    ]
    try:
        with open(path) as f:
            shipped = json.load(f)
        table = paired_table(shipped, task, method_title)
    except (OSError, ValueError, KeyError):
        return lines  # an installed package without the repository's docs
    if table:
        lines += [
            f'At convergence ({task}, the shipped records {osp.basename(path)}):', '', *table, ''
        ]
    return lines


def _pictures(out: str, task: str, runs: Dict[str, dict]) -> List[str]:
    """Curves and feature maps of the first seed's runs of a task, as markdown lines."""
    lines = []
    diffkd = runs.get('diffkd')
    if diffkd is not None:
        curves = diffkd['curves']
        terms = {
            k[len('distill.'):]: v
            for k, v in curves.items()
            if k.startswith('distill.') and k.endswith(('_kd', '_ddim', '_ae'))
        }
        terms.update({k: v for k, v in curves.items() if k.startswith('student.loss')})
        name = f'{task}_diffkd_losses.png'
        if plot_curves(
                terms, osp.join(out, name), f'{task}: DiffKD run, each loss term', 'loss',
                logy=True):
            lines += ['### DiffKD loss terms', '', f'![DiffKD loss terms]({name})', '']
        gates = {k: v for k, v in curves.items() if k.endswith('_gate')}
        name = f'{task}_diffkd_gate.png'
        if plot_curves(gates, osp.join(out, name),
                       f'{task}: noise-adapter weight g of the student feature', 'g'):
            lines += ['### Noise-adapter weight g', '', f'![gate]({name})', '']
        if diffkd.get('picture'):
            name = f'{task}_diffkd_features.png'
            atomic_copy(diffkd['picture'], osp.join(out, name))
            lines += [
                '### Student / denoised student / teacher feature maps', '', f'![features]({name})',
                ''
            ]
    relative = {}
    for method, run in runs.items():
        term = distill_term(run.get('curves', {}), method)
        if term and term[0] > 0:
            relative[method_title(method)] = [v / term[0] for v in term]
    name = f'{task}_distill_terms.png'
    if plot_curves(
            relative,
            osp.join(out, name),
            f'{task}: each method\'s matching term, relative to its first iteration',
            'term / first value',
            logy=True):
        lines += ['### Matching term of each KD method', '', f'![matching terms]({name})', '']
    return lines
