"""What a test needs from outside Python (a program, Chromium, an npm package): on a
developer's machine its absence skips the test, saying how to install it; in CI
(`CI` set), which must have everything, it fails the run."""

import os
import shutil
from pathlib import Path

import pytest


def _missing(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require(path: Path, how_to_install: str) -> None:
    """A file the test needs."""
    if not path.exists():
        _missing(f"{path} is missing: {how_to_install}")


def program(name: str, how_to_install: str) -> str:
    """A program on the PATH the test runs: its path."""
    path = shutil.which(name)
    if path is None:
        _missing(f"{name} is not installed: {how_to_install}")
    return path
