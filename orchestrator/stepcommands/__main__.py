"""``python -m orchestrator.stepcommands <step> ...``: the same as ``orchestrator-step``."""

import sys

from orchestrator.stepcommands.cli import main

sys.exit(main())
