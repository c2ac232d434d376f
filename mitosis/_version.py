"""The version of this mitosis (read by the package's metadata and recorded in every trial)."""

__version__ = "0.1.0"
