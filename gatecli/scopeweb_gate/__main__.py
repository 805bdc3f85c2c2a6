"""``python -m scopeweb_gate``: the ``scopeweb-gate`` command."""

import sys

from scopeweb_gate.cli import main

sys.exit(main())
