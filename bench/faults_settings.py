"""Settings of the processes ``bench/faults.py`` starts: the product's settings, but Redis hands an
unacknowledged task back after ``BENCH_VISIBILITY_TIMEOUT`` seconds (default 60) and looks for
such tasks every 5 s, so that the redelivery after a SIGKILLed worker happens within the bench.

The product refuses a visibility timeout shorter than its longest task's time limit (6 h 5 min:
``scopeweb/settings.py``), rightly: a live analysis would be handed to a second worker. The bench
gives the short timeout only to the worker it starts after SIGKILLing one; its other workers get
an hour (``BENCH_VISIBILITY_TIMEOUT=3600``), longer than any of its runs.
"""

import os

from scopeweb.settings import *  # noqa: F403
from scopeweb.settings import CELERY_BROKER_TRANSPORT_OPTIONS as _PRODUCT_OPTIONS

CELERY_BROKER_TRANSPORT_OPTIONS = {
    **_PRODUCT_OPTIONS,
    "visibility_timeout": int(os.environ.get("BENCH_VISIBILITY_TIMEOUT", "60")),
    # kombu sweeps for overdue messages every interval x throttle seconds (100 s by default).
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
}
