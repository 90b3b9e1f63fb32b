"""The package version, in a leaf module so that modules below the package top can read it without a cycle."""
__version__ = "0.1.0"
