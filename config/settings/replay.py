"""Replay of recorded sessions and policy what-ifs (README "Replay and what-if")."""

from __future__ import annotations

from config.env import env_int

# `POST /api/v1/sessions/<id>/replay` runs in the request: sessions with more recorded
# action-graph nodes than this (or more turns than the next) answer 400 `replay_too_large`;
# `manage.py replay` has no such cap.
WARDEN_REPLAY_MAX_NODES = env_int("WARDEN_REPLAY_MAX_NODES", 2000)
WARDEN_REPLAY_MAX_TURNS = env_int("WARDEN_REPLAY_MAX_TURNS", 100)
# A policy what-if reads at most this many recorded decisions per request (then it says
# `truncated` and gives `next_after` to go on), and names at most this many sessions.
WARDEN_WHATIF_MAX_DECISIONS = env_int("WARDEN_WHATIF_MAX_DECISIONS", 1000)
WARDEN_WHATIF_MAX_SESSIONS = env_int("WARDEN_WHATIF_MAX_SESSIONS", 100)
