"""The desired state as the daemon runs it, reloaded when the files change.

A reload that fails validation is rejected whole: the previous desired state
keeps running, the problems are logged and counted.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.loading import DesiredState, directory_digest, load_directory
from orchestrator.metrics import Metrics

log = logging.getLogger(__name__)


class DesiredStateSource:
    def __init__(self, directory: Path, *, metrics: Metrics) -> None:
        self.directory = directory
        self._metrics = metrics
        self._digest = directory_digest(directory)
        self.state = load_directory(directory)  # raises ConfigError: refuse to start
        self.last_error: ConfigError | None = None
        metrics.config_valid.set(1)
        metrics.config_last_success.set(time.time())

    def reload_if_changed(self) -> bool:
        """Reload when the files changed; True when a new desired state was accepted."""
        digest = directory_digest(self.directory)
        if digest == self._digest:
            return False
        self._digest = digest
        try:
            state = load_directory(self.directory)
        except ConfigError as error:
            self.last_error = error
            self._metrics.config_reload_errors.inc()
            self._metrics.config_valid.set(0)
            log.error(
                "config change rejected; the previous desired state keeps running",
                extra={"problems": [str(p) for p in error.problems]},
            )
            return False
        self.state = state
        self.last_error = None
        self._metrics.config_valid.set(1)
        self._metrics.config_last_success.set(time.time())
        log.info(
            "config reloaded",
            extra={"onboardings": len(state.onboardings), "clusters": len(state.clusters)},
        )
        return True

    def replace(self, state: DesiredState) -> None:
        """For tests and embedding: run this desired state."""
        self.state = state
