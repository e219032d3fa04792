"""Array backends and numerical building blocks (no dependency on the rest of the package)."""
