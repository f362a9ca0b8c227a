"""Integration tests: real Airflow processes and servers (marked ``integration``)."""
