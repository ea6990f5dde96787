"""modelform."""
