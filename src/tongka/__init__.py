"""tongka: the business behind a prepaid cross-border (mainland China / Hong Kong) SIM and eSIM data service."""

__version__ = "0.1.0"
