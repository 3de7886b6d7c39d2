"""Evaluation: the one way to score a saved model under a reducer
(`score.py`), task metrics (`metrics.py`), one checkpoint under several
reducers for eval.py (`runner.py`), trade-off tables of several settings
(`tradeoff.py`), per-question-type tables (`per_type.py`), target recall
(`target_recall.py`), the printed table, JSON and plot (`report.py`)."""
