from apps.core.exceptions import InvalidInput


class EndpointInvalid(InvalidInput):
    code = "invalid_endpoint"
