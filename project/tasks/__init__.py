"""Tasks: a record of every task this service queued, and the API to follow them."""
