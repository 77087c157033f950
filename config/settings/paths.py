from pathlib import Path

from config.env import env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
VAR_DIR = Path(env_str("WARDEN_VAR_DIR", str(BASE_DIR / "var")))
