from apps.core.exceptions import Conflict, NotFound, WardenError


class TenantNotFound(NotFound):
    pass


class LastOwner(Conflict):
    code = "last_owner"


class AuthError(WardenError):
    """A credential was refused. `code` says why (api_key_expired, invalid_issuer, …)."""

    code = "authentication_failed"
