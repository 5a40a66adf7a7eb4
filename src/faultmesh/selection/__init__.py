"""selection layer (pure)."""
