"""SciSR: domain-specific versus generic super-resolution for scientific images."""

__version__ = "0.1.0"
