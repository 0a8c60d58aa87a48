"""Exporting compiled functions as kernel libraries: a shared library with a C API, a
header, a JSON manifest and a Python loader."""
