# The Airflow image of docker-compose.yaml: Airflow's own image plus this project's runtime dependencies,
# resolved against the project's lock. dags/, plugins/ and include/ are mounted, not copied, so an edit
# shows without a rebuild. docker compose builds it; by hand, from the repository root:
#   docker build -t model-lifecycle-airflow:3.3.2 .
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE}
COPY requirements.txt constraints.txt /opt/model-lifecycle/
RUN pip install --no-cache-dir -r /opt/model-lifecycle/requirements.txt \
        -c /opt/model-lifecycle/constraints.txt
# airflow-init writes the configuration every component shares (its generated secrets) and the users'
# passwords here, in a volume; group 0 may write, as any uid the compose file runs Airflow as.
RUN install -d -m 0775 /opt/airflow/config
