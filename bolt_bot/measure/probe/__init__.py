"""Code that runs inside the measured project's environment (no Bolt imports): the folder is put on PYTHONPATH."""

from pathlib import Path

PROBE_DIR = Path(__file__).resolve().parent
