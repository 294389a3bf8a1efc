"""API tokens: issued by `flask tokens`, required on every API request under API_AUTH=required."""
