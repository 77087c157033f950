"""Redaction fixtures: the agents' in-process turn runner and the approvals' parked turn."""

from tests.agents.conftest import no_dispatch
from tests.approvals.conftest import dave, park_turn, sent

__all__ = ["dave", "no_dispatch", "park_turn", "sent"]
