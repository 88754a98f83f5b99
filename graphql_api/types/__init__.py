"""The schema's object, enum and union types."""
