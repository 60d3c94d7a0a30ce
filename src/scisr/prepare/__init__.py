"""Data preparation: resizing, intensity normalization, degradation and leakage-free splitting."""
