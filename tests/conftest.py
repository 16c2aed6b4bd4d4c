"""Shared test set-up: offline hub, the tests folder importable (plugin modules), a CI flag."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))
IN_CI = os.environ.get("CI") == "true"
