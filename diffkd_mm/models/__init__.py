from .connectors import *  # noqa: F401,F403
from .diffkd import *  # noqa: F401,F403
from .distillers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
