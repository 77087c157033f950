"""Slack: one-click approvals (Block Kit cards, a modal for the rejection's rationale).

Off unless both the bot token and the signing secret are set; approvals still work in the
console and the API. Both are secrets: `SLACK_BOT_TOKEN_FILE` / `SLACK_SIGNING_SECRET_FILE`.
"""

from __future__ import annotations

from config.env import env_float, env_str

SLACK_BOT_TOKEN = env_str("SLACK_BOT_TOKEN", "")
SLACK_SIGNING_SECRET = env_str("SLACK_SIGNING_SECRET", "")
# The Web API's address (slack-sdk's `base_url`): Slack's own unless pointed elsewhere (a
# proxy, an Enterprise Grid gateway, or the tests' loopback server).
SLACK_API_BASE_URL = env_str("SLACK_API_BASE_URL", "https://slack.com/api/")
# Per Web API call. `views.open` runs inside the interaction request (a trigger_id lives 3 s),
# so keep this short.
SLACK_TIMEOUT_SECONDS = env_float("SLACK_TIMEOUT_SECONDS", 2.5)
