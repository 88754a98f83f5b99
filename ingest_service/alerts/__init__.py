"""Seller alerts: rules per auction, and their signed webhook deliveries (Standard Webhooks)."""
