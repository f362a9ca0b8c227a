# The Airflow image with airflow-provider-amoro installed (used by docker-compose.yaml).
#   docker build -t airflow-provider-amoro .
ARG AIRFLOW_VERSION=3.3.2
ARG PYTHON_VERSION=3.11
FROM apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}
ARG AIRFLOW_VERSION
COPY --chown=airflow:root pyproject.toml README.md /opt/amoro/
COPY --chown=airflow:root airflow_provider_amoro /opt/amoro/airflow_provider_amoro
# Pin Airflow so that pip never up- or downgrades the image's own Airflow while installing the provider.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" "/opt/amoro[celery,postgres,s3]"
