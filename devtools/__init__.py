"""Development and test tooling, outside the Django project: the embedded PostgreSQL and Redis
(embedded.py), the `make run` supervisor (devrun.py) and the pytest plugin that gives the
tests their services (pytest_services.py). Never imported by config/ or apps/, and not in the
production image (deploy/Dockerfile)."""
