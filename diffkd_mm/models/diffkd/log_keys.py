"""Where DiffKD's losses and connectors write their terms and statistics in mmengine's logs."""
from mmengine.logging import MessageHub

#: The prefix every mmrazor distillation algorithm puts before its distiller's losses.
DISTILL_PREFIX = 'distill.'


def log_distill_scalar(key: str, value: float) -> None:
    """Log ``value`` as ``distill.<key>``, next to the losses the algorithm returns.

    The train loop logs what the model returns under ``train/``; a term written here with the
    same prefix appears in the same log line and in the visualiser's scalars.
    """
    MessageHub.get_current_instance().update_scalar(f'train/{DISTILL_PREFIX}{key}', value)
