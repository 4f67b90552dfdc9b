"""Running pipelines: runs and their steps, leases handed to agents, dispatch, the
state transitions that follow each result, and the safety nets behind them."""
