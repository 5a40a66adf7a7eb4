"""The chaos-mesh.org/v1alpha1 object model: every kind, its validation and defaults."""
