from apps.core.exceptions import Conflict, Forbidden, NotFound, WardenError


class TenantNotFound(NotFound):
    pass


class LastOwner(Conflict):
    code = "last_owner"


class OwnerRequired(Forbidden):
    """Only an owner may make someone an owner, or change or remove an owner."""

    code = "owner_required"


class InvitationNotFound(NotFound):
    code = "invitation_not_found"


class InvitationUnusable(Conflict):
    """The invitation exists but can't be accepted: `code` says why
    (invitation_used, invitation_revoked, invitation_expired)."""

    code = "invitation_unusable"


class AuthError(WardenError):
    """A credential was refused. `code` says why (api_key_expired, invalid_issuer, …)."""

    code = "authentication_failed"
