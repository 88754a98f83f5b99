"""The schema's root mutation fields."""
