"""The publication: posts on probation inspections. Knows nothing of email."""
