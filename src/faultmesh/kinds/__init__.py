"""kinds layer (pure)."""
