"""Anomaly alerting: a periodic detector over the fleet's signals, with incidents and sinks.

``detector.py`` is the maths (pure), ``signals.py`` the catalogue and its readers,
``evaluate.py`` one evaluation (under an advisory lock, state in PostgreSQL),
``sinks.py`` the log line and the webhook, ``task.py`` the beat task.
"""
