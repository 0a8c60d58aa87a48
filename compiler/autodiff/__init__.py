"""Automatic differentiation as IR -> IR passes: `autodiff` (reverse) and `jvp` (forward),
driven by the per-dialect rule tables in `rules/`."""
