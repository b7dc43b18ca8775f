"""Console entry points. Keep this package free of imports: the agent's
entry point must choose its concurrency backend before anything else loads."""
