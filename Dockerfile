# syntax=docker/dockerfile:1
# pgcdc container image: docker build -t pgcdc:0.2.0 .
#
# Runtime properties (the Helm chart in helm/pgcdc relies on them):
#  - Node 24 LTS on Debian bookworm-slim; production dependencies only, compiled dist/.
#  - Runs as uid/gid 10001 (non-root); application files are owned by root and read-only to it.
#  - Works with a read-only root filesystem: nothing writes outside /tmp. Mount an emptyDir (or
#    tmpfs) at /tmp: `docker run --read-only --tmpfs /tmp ...`, in Kubernetes an emptyDir volume.
#  - The config file is expected at /etc/pgcdc/pgcdc.yaml (mount it); secrets come as PGCDC_*
#    environment variables. HTTP (health, readiness, metrics, REST API) on 8080.
#  - No HEALTHCHECK: Kubernetes probes /healthz and /readyz.
#  - pgcdc handles SIGTERM itself (drains within 30 s), so node can be PID 1.
#
# scripts/docker-smoke.sh reproduces these steps without a Docker engine.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- build: all dependencies, compile src/ → dist/ ----
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
COPY scripts/patch-dependencies.mjs ./scripts/
COPY scripts/patches ./scripts/patches
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# ---- deps: production dependencies only ----
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci runs the postinstall that patches dependencies (scripts/patch-dependencies.mjs).
COPY scripts/patch-dependencies.mjs ./scripts/
COPY scripts/patches ./scripts/patches
RUN npm ci --omit=dev --no-audit --no-fund \
  && npm cache clean --force

# ---- runtime ----
FROM ${NODE_IMAGE} AS runtime
# PGCDC_HTTP_HOST: in a container, loopback cannot be reached by probes or Prometheus. Off
# loopback pgcdc refuses to start with its mutating endpoints open and no token: set
# PGCDC_HTTP_AUTH_TOKEN (the chart does), or PGCDC_HTTP_MUTATIONS=false.
ENV NODE_ENV=production \
    NODE_OPTIONS=--enable-source-maps \
    HOME=/tmp \
    PGCDC_HTTP_HOST=0.0.0.0
RUN groupadd --system --gid 10001 pgcdc \
  && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin pgcdc
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY schemas ./schemas
COPY --from=build /src/dist ./dist
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["node", "/app/bin/pgcdc.js"]
CMD ["run", "--config", "/etc/pgcdc/pgcdc.yaml"]
