"""The renewal flow, above the domains: see flow.py."""
