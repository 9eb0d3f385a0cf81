"""Example scripts of region-attention (not part of the installed package)."""
