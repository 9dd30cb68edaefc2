-- One database per system that keeps state in Postgres.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE feast;
