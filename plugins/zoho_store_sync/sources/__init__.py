"""Store sources: each turns a store's API into the canonical customer frame (see customers.py)."""
