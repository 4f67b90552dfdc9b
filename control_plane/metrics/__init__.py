"""Prometheus metrics for the people who run Legato: the instruments the control plane
updates in memory as things happen (``instruments``) and the gauges read when Prometheus
scrapes (``scraped``). ``api/http_metrics.py`` serves them on ``GET /metrics`` of the HTTP
listener; the domain packages report through hooks and observers
(``execution/observer.py``) and never import this one. docs/monitoring.md lists every
metric."""
