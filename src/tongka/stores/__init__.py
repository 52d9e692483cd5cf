"""The store finder: tongka's stores and agent counters, where they are and when they are open."""
