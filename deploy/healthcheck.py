"""Container health check (deploy/Dockerfile's HEALTHCHECK): exit 0 when the web process in
this container answers GET /healthz with 200, 1 otherwise. Standard library only.

The request names a host the settings allow (the first of DJANGO_ALLOWED_HOSTS, else
localhost): Django answers 400 to any other Host, and an operator who narrows the allowed
hosts must not turn every container unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.request


def allowed_host() -> str:
    for host in os.environ.get("DJANGO_ALLOWED_HOSTS", "").split(","):
        host = host.strip()
        if host and host != "*":
            return host.lstrip(".")  # ".example.com" allows example.com itself too
    return "localhost"


def main() -> int:
    port = os.environ.get("PORT") or "8000"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz", headers={"Host": allowed_host()}
    )
    try:
        # A fixed http URL on loopback; any status but 2xx raises HTTPError (an OSError).
        with urllib.request.urlopen(request, timeout=4) as response:  # noqa: S310
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
