"""Fixtures shared by more than one test layer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.processes import DaemonProcess


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemon processes a test starts (it appends them); each is stopped at the end."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.stop()
