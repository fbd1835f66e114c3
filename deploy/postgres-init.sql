-- One server, two databases: Dagster's instance and MLflow's tracking + registry.
-- Run once by the postgres image on an empty volume (/docker-entrypoint-initdb.d).
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
