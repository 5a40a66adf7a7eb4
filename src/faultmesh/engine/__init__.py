"""engine layer (pure)."""
