from .runner import check_configs, run_demo, run_task
from .settings import METHODS, QUICK_SCHEDULES, SCHEDULES, TASKS, DemoSettings, Schedule

__all__ = [
    'METHODS', 'QUICK_SCHEDULES', 'SCHEDULES', 'TASKS', 'DemoSettings', 'Schedule', 'check_configs',
    'run_demo', 'run_task'
]
