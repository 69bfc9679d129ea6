"""Developer scripts: the test services (`services.py`) and what they share with the tests."""
