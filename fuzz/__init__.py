"""Fuzz targets (scripts) and their shared oracle; not part of the installed package."""
