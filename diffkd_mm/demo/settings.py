"""What the demo runs: tasks, methods, schedules and seeds."""
import dataclasses
from typing import Dict, Optional, Sequence, Tuple

#: task -> (metric name in the report, key of the stock metric's result, scale to percent)
TASK_METRICS = dict(det=('mAP', 'coco/bbox_mAP', 100.0), seg=('mIoU', 'mIoU', 1.0))
TASKS = tuple(TASK_METRICS)
#: The methods the demo compares by default; each is the config ``<task>_<method>.py``.
METHODS = ('student', 'fitnet', 'pkd', 'diffkd')
METHOD_TITLES = dict(
    teacher='Teacher',
    student='Student (no KD)',
    fitnet='Student + FitNet',
    pkd='Student + PKD',
    diffkd='Student + DiffKD')


def method_title(method: str) -> str:
    """``'diffkd_ae32'`` -> ``'Student + DiffKD (ae32)'``."""
    if method in METHOD_TITLES:
        return METHOD_TITLES[method]
    base, _, variant = method.partition('_')
    title = METHOD_TITLES.get(base, base)
    return f'{title} ({variant})' if variant else title


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The data and iterations of one task's runs."""
    teacher_iters: int
    student_iters: int
    num_train: int
    num_val: int


#: The fields of a record that give its schedule.
SCHEDULE_KEYS = tuple(field.name for field in dataclasses.fields(Schedule))
#: The demo's models and data, as each record says (``benchmark_version``):
#: records of two versions are never paired or averaged together. 1: quarter-width students
#: (records without the field); 2: students an eighth of their teachers' width.
BENCHMARK_VERSION = 2

#: The README's demo: both tasks in at most ~20 minutes on 2 CPU cores with the teachers to
#: train (docs/demo.md has the measured times).
SCHEDULES = dict(
    det=Schedule(teacher_iters=500, student_iters=200, num_train=400, num_val=100),
    seg=Schedule(teacher_iters=800, student_iters=300, num_train=400, num_val=100))
#: ``--schedule converged``: the benchmark at convergence. Teachers and students train for the
#: same 2000 iterations, where both tasks' teacher and no-KD student curves have flattened on
#: the held-out seeds (docs/results), and every seed is evaluated on 300 images.
CONVERGED_SCHEDULES = dict(
    det=Schedule(teacher_iters=2000, student_iters=2000, num_train=400, num_val=300),
    seg=Schedule(teacher_iters=2000, student_iters=2000, num_train=400, num_val=300))
#: ``--quick``: a smoke run of the whole flow (numbers mean nothing).
QUICK_SCHEDULES = {
    task: Schedule(teacher_iters=20, student_iters=10, num_train=24, num_val=8)
    for task in TASKS
}
#: ``--schedule`` name -> the schedules of every task.
SCHEDULE_PROFILES = dict(main=SCHEDULES, converged=CONVERGED_SCHEDULES, quick=QUICK_SCHEDULES)

#: ``DemoSettings.parallel``: what one process of a parallel run trains.
PARALLEL_UNITS = ('task-seed', 'run')


@dataclasses.dataclass
class DemoSettings:
    """One run of the demo.

    Args:
        tasks (Sequence[str]): Among :data:`TASKS`. Defaults to both.
        seeds (Sequence[int]): Each seed draws its own data, trains its own teacher (cached)
            and its own students. Defaults to (0, ).
        methods (Sequence[str]): Students to train, each a config ``<task>_<method>.py`` of
            ``config_dir``. Defaults to :data:`METHODS`.
        schedules (dict, optional): task -> :class:`Schedule`; defaults to :data:`SCHEDULES`.
        config_dir (str, optional): Default: the package's ``configs/diffkd/demo``.
        cache_dir (str, optional): Default: ``$DIFFKD_CACHE_DIR`` or ``~/.cache/diffkd_mm``.
        log_interval (int): Logging interval of each run. Defaults to 20.
        loss_weight (float, optional): Sets ``loss_weight`` of every distillation loss entry
            of the KD students (for DiffKD: the weight of its matching term), to compare
            weights on held-out seeds; None (default) keeps the configs' weights.
        jobs (int): Task-seeds (or runs, see ``parallel``) trained at once, each in its own
            process with ``cpu_count // jobs`` threads. Defaults to 1 (one after another, in this
            process).
        parallel (str): What each of the ``jobs`` processes trains: ``'task-seed'`` (default:
            a teacher, then its students, one after another) or ``'run'`` (one model; every
            teacher and every student without KD start at once, the KD students of a task-seed
            as soon as its teacher is done: for many cores, or many processes sharing a GPU).
    """
    tasks: Sequence[str] = TASKS
    seeds: Sequence[int] = (0, )
    methods: Sequence[str] = METHODS
    schedules: Optional[Dict[str, Schedule]] = None
    config_dir: Optional[str] = None
    cache_dir: Optional[str] = None
    log_interval: int = 20
    loss_weight: Optional[float] = None
    jobs: int = 1
    parallel: str = 'task-seed'

    def __post_init__(self):
        self.tasks = _unique(self.tasks, 'tasks')
        self.seeds = _unique(self.seeds, 'seeds')
        self.methods = _unique(self.methods, 'methods')
        for task in self.tasks:
            if task not in TASKS:
                raise ValueError(f'tasks: {task!r} is not one of {TASKS}')
        for seed in self.seeds:
            if not isinstance(seed, int) or seed < 0:
                raise ValueError(f'seeds must be ints >= 0, got {seed!r}')
        for method in self.methods:
            if method == 'teacher' or not method.replace('_', '').isalnum():
                raise ValueError(f'methods: {method!r} is not a student method name such as '
                                 f'{METHODS}')
        self.schedules = dict(SCHEDULES, **(self.schedules or {}))
        for task, sched in self.schedules.items():
            for field in dataclasses.fields(Schedule):
                value = getattr(sched, field.name)
                if not isinstance(value, int) or value < 1:
                    raise ValueError(f'schedules[{task!r}].{field.name} must be a positive int, '
                                     f'got {value!r}')
        if self.loss_weight is not None and not (isinstance(self.loss_weight,
                                                            (int, float)) and self.loss_weight > 0):
            raise ValueError(f'loss_weight must be a number > 0, got {self.loss_weight!r}')
        if not isinstance(self.log_interval, int) or self.log_interval < 1:
            raise ValueError(f'log_interval must be a positive int, got {self.log_interval!r}')
        if not isinstance(self.jobs, int) or isinstance(self.jobs, bool) or self.jobs < 1:
            raise ValueError(f'jobs must be a positive int, got {self.jobs!r}')
        if self.parallel not in PARALLEL_UNITS:
            raise ValueError(f'parallel must be one of {PARALLEL_UNITS}, got {self.parallel!r}')


def _unique(values, name: str) -> Tuple:
    values = tuple(values)
    if not values:
        raise ValueError(f'{name} must not be empty')
    if len(set(values)) != len(values):
        raise ValueError(f'{name} has duplicates: {values}')
    return values
