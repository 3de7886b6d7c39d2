"""Evaluation: task metrics (`metrics.py`), one checkpoint under several
reducers (`runner.py`), the printed table and JSON (`report.py`)."""
