"""The schema's root query fields."""
