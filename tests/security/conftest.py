"""Fixtures of the security suite: payloads that would leave a marker file if they ran."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class Payload:
    """`marker` appears if any payload runs. `site_dir` holds a sitecustomize.py (run by any
    Python started with it on PYTHONPATH), `script` a shell script, `code` a Python line."""

    marker: Path
    site_dir: Path
    script: Path
    code: str

    def ran(self) -> bool:
        return self.marker.exists()


@pytest.fixture
def payload(tmp_path: Path) -> Payload:
    marker = tmp_path / "PWNED"
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    (site_dir / "sitecustomize.py").write_text(code + "\n")
    script = tmp_path / "payload.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    return Payload(marker=marker, site_dir=site_dir, script=script, code=code)
