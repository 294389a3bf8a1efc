"""Start and stop real services and processes for the tests and the benchmark."""
