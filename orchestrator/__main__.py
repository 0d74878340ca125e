"""``python -m orchestrator``: the same as the ``orchestrator`` command."""

from orchestrator.interfaces.cli import main

raise SystemExit(main())
