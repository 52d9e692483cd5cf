"""Jobs that run themselves: the registry (`registry.py`), the scheduler that runs each due job in one
runner only (`scheduler.py`, the table `scheduled_jobs`), and `tongka jobs list|run` (`cli.py`)."""
