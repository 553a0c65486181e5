"""Fuzz targets, one module per area; ``fuzz.registry`` lists them by name."""
