"""MLflow: which store, runs that always end, what a run records, outages spooled and synced,
abandoned runs reaped, the logged model and the UI."""
