"""Auto-renew: a line's rule to buy a pack when its data in a zone runs low, within a monthly cap."""
