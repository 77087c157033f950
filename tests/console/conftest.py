from tests.approvals.conftest import dave, no_dispatch, park_turn, sent

__all__ = ["dave", "no_dispatch", "park_turn", "sent"]
