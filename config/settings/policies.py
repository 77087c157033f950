"""Policies: which engine decides tool calls, and its limits."""

from __future__ import annotations

from config.env import env_float, env_int, env_str

# An OPA server's URL (http(s)://host:port). Empty: policies are evaluated in-process (regopy,
# in helper processes). The same .rego source, input document and result either way.
OPA_URL = env_str("OPA_URL", "")
# Bearer token OPA expects (its `--authentication=token`), if any. A secret: OPA_TOKEN_FILE.
OPA_TOKEN = env_str("OPA_TOKEN", "")
# How long one policy may take to evaluate (in-process: then its helper is killed; OPA: the
# HTTP timeout). Past it the call is denied (fail closed).
WARDEN_POLICY_TIMEOUT_SECONDS = env_float("WARDEN_POLICY_TIMEOUT_SECONDS", 1.0)
# How long compiling one version may take (in-process engine), once per helper.
WARDEN_POLICY_COMPILE_TIMEOUT_SECONDS = env_float("WARDEN_POLICY_COMPILE_TIMEOUT_SECONDS", 10.0)
# Helper processes per web or worker process for the in-process engine (decisions at once).
WARDEN_POLICY_HELPERS = env_int("WARDEN_POLICY_HELPERS", 2)
# Resident memory a helper may use before it is killed (and the decision denied).
WARDEN_POLICY_HELPER_MEMORY_MB = env_int("WARDEN_POLICY_HELPER_MEMORY_MB", 512)
# Larger policy sources are refused with 400 `policy_too_large`.
WARDEN_POLICY_MAX_SOURCE_BYTES = env_int("WARDEN_POLICY_MAX_SOURCE_BYTES", 65536)
