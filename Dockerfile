# One image for every Python service of the stack: Airflow (all components and Celery
# workers) and the MLflow tracking server, with the project's pinned requirements.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW_HOME=/opt/airflow \
    PYTHONPATH=/opt/project

RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/project
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY pipelines/ pipelines/
COPY dags/ dags/
COPY feature_repo/ feature_repo/
COPY great_expectations/ great_expectations/
COPY deploy/ deploy/

# Where the services keep state, their user's alone (a new volume takes these modes).
RUN useradd --create-home --uid 50000 pipeline \
    && mkdir -p /opt/airflow /data/state /mlartifacts /mlflow-auth \
    && chown -R pipeline /opt/airflow /data/state /mlartifacts /mlflow-auth \
    && chmod 0700 /opt/airflow /data/state /mlartifacts /mlflow-auth
USER pipeline
