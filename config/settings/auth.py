"""Identity: API keys and OIDC JWT bearer tokens."""

from __future__ import annotations

from config.env import env_int, env_list, env_str

# OIDC: tokens are verified against the issuer's JWKS. The JWKS URL defaults to
# the one the issuer's discovery document names.
OIDC_ISSUER = env_str("OIDC_ISSUER", "")
OIDC_AUDIENCE = env_str("OIDC_AUDIENCE", "")
OIDC_JWKS_URL = env_str("OIDC_JWKS_URL", "")
OIDC_ALGORITHMS = env_list("OIDC_ALGORITHMS", ["RS256", "ES256"])
OIDC_TENANT_CLAIM = env_str("OIDC_TENANT_CLAIM", "tenant")
OIDC_ROLES_CLAIM = env_str("OIDC_ROLES_CLAIM", "roles")
OIDC_USERNAME_CLAIM = env_str("OIDC_USERNAME_CLAIM", "preferred_username")
OIDC_LEEWAY_SECONDS = env_int("OIDC_LEEWAY_SECONDS", 30)
OIDC_JWKS_CACHE_SECONDS = env_int("OIDC_JWKS_CACHE_SECONDS", 300)
# Browser sign-in (authorization code + PKCE) for the chat and the console: on when the
# issuer and a client id are set. The secret may come from OIDC_CLIENT_SECRET_FILE; empty
# means a public client (PKCE alone). The redirect URI defaults to <host>/chat/oidc/callback.
OIDC_CLIENT_ID = env_str("OIDC_CLIENT_ID", "")
OIDC_CLIENT_SECRET = env_str("OIDC_CLIENT_SECRET", "")
OIDC_REDIRECT_URI = env_str("OIDC_REDIRECT_URI", "")
OIDC_SCOPES = env_str("OIDC_SCOPES", "openid email profile")

# Bootstrap admin created by `manage.py seed_demo`.
WARDEN_ADMIN_USERNAME = env_str("WARDEN_ADMIN_USERNAME", "admin")
WARDEN_ADMIN_PASSWORD = env_str("WARDEN_ADMIN_PASSWORD", "")
WARDEN_ADMIN_EMAIL = env_str("WARDEN_ADMIN_EMAIL", "admin@example.com")

# Invitations to join a tenant expire after this many hours unless created with expires_at
# (at most 30 days).
WARDEN_INVITATION_TTL_HOURS = env_int("WARDEN_INVITATION_TTL_HOURS", 72)
