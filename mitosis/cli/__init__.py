"""The ``mitosis`` command line (click): parses arguments and ``pyproject.toml``, calls the
Python API, prints, and sets exit codes. Nothing below it prints or exits."""

from .main import main

__all__ = ["main"]
