# postgres.Dockerfile: a PostgreSQL 15 image from Debian's postgresql-15
# package, for machines that cannot pull the official postgres:15 image (the
# test suite's; see tests/docker-demo.sh). docker-compose.yml uses the
# official image unless POSTGRES_IMAGE names this one.
#
# It behaves like the official image as far as the demo needs:
# POSTGRES_PASSWORD, POSTGRES_USER and POSTGRES_DB; on first start initdb in
# PGDATA and every *.sql and *.sh in /docker-entrypoint-initdb.d; the command
# `postgres -c key=value ...` (or just the -c options); listening on every
# interface, port 5432, with password (scram-sha-256) authentication.
#
#     docker build -f docker/postgres.Dockerfile --build-arg BASE_IMAGE=... -t NAME docker
ARG BASE_IMAGE=debian:12-slim
FROM ${BASE_IMAGE}
# No "main" cluster: postgresql-common would create one at install time.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/^#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' \
        /etc/postgresql-common/createcluster.conf \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
    && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
    && chmod 0700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod 0755 /usr/local/bin/docker-entrypoint.sh
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["postgres"]
