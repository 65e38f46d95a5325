"""Reading instances, their event log and SLA figures: the read side of the public API."""
