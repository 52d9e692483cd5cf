"""Forecast: when a line's data runs out, and the cheapest packs that cover a period."""
