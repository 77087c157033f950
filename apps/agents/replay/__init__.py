"""Replay: run a recorded session's turns through the loop again, from its log, with no live
call, and say whether it reproduces and where it first diverges.

The loop (apps/agents/runtime) runs over ports; a replay plugs in ports that serve the record:

- the model answers each call with the output recorded for its node id (`<turn>:<step>:
  model:<attempt>`): the same text and tool calls, a malformed reply as malformed, a failed
  call as the same failure — no endpoint is contacted;
- the toolbox returns each call's recorded result — no tool runs; its specs (what the step
  parser validates against) are the agent's tools as the catalog has them now;
- the budget grants each call the obligations recorded on its node (so a compressed prompt
  is compressed again the same way) and refuses where the recorded turn was refused;
- the policy gate evaluates for real. With `policies="recorded"` (the default: reproduction)
  it evaluates the policy *versions* each decision recorded, in their recorded modes, on the
  input document recorded with it (the call's arguments put back); with `"current"` it asks
  the agent's policies as they are now, on the same inputs — what today's policies would
  have made of the same session;
- checkpoints go to memory, and every node the loop writes is compared with the recorded
  node of the same id as it is written, so the first difference is found where it happens.

Nothing is written: the replay reads inside a READ ONLY transaction that is rolled back, so
even a bug that tried to write would fail instead of touching the session. Its events stay
in memory.

Damaged or incomplete recorded data (a missing node or turn, a node without the fields its
kind needs, a completed turn without its `turn.completed` event, a deleted policy version)
raises `ReplayIncomplete` (409 `replay_incomplete`) naming the turn and node.
"""

from __future__ import annotations

from apps.agents.replay.record import (
    POLICY_SOURCES,
    Divergence,
    PolicySource,
    ReplayIncomplete,
    ReplayTooLarge,
)
from apps.agents.replay.service import ReplayReport, TurnReplay, session_replay

__all__ = [
    "POLICY_SOURCES",
    "Divergence",
    "PolicySource",
    "ReplayIncomplete",
    "ReplayReport",
    "ReplayTooLarge",
    "TurnReplay",
    "session_replay",
]
