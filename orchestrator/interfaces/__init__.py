"""How people and services reach the daemon: the HTTP API (``api``, over ``service``),
the ``orchestrator`` command (``cli``) and what both show (``views``, ``explaining``,
``printing``, ``tables``)."""
