"""Alert rules on the collector: conditions evaluated as data arrives, a hold-down kept in the
graph database so replicas do not fire one alert twice, and actions (the log, the JSON event
log, an HTTP webhook, a command). See docs/alerts.md.

- :mod:`.rules`: the rules from the configuration file, checked once at start (no I/O);
- :mod:`.engine`: the conditions, from plain values to candidates (no I/O);
- :mod:`.state`: the hold-down and the alert records in FalkorDB;
- :mod:`.actions`: delivery (webhook queue with backoff, commands without a shell);
- :mod:`.service`: what ties them to ingest; :mod:`.web`: ``/api/alerts``.
"""
