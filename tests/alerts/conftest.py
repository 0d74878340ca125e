"""promtool, from Debian's ``prometheus`` package: skipped without it, failed under CI."""

from __future__ import annotations

import pytest

from tests.alerts.shipped import prometheus_tool


@pytest.fixture(scope="session")
def promtool() -> str:
    return prometheus_tool("promtool")
