-- A second database for the Iceberg SQL catalog (pyiceberg SqlCatalog), beside Airflow's own.
CREATE USER iceberg WITH PASSWORD 'iceberg';
CREATE DATABASE iceberg_catalog OWNER iceberg;
