# syntax=docker/dockerfile:1
# Tollgate worker image.
#   docker build -t tollgate-worker .
#   docker compose up            (see docker-compose.yml)

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript and prebuild the Temporal workflow bundle ----
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# sources (src, scripts, demo, bench, policies, tsconfig*); .dockerignore keeps node_modules/dist out
COPY . .
# tsc -p tsconfig.build.json, then dist/workflow-bundle.js; policies/ may be empty (and then absent in git)
RUN npm run build \
    && test -f dist/src/worker.js \
    && test -f dist/workflow-bundle.js \
    && mkdir -p policies

# ---- runtime: production dependencies, compiled output and policies only ----
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
    && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/policies ./policies

ENV TEMPORAL_ADDRESS=temporal:7233 \
    TEMPORAL_NAMESPACE=default \
    TOLLGATE_TASK_QUEUE=tollgate-releases \
    TOLLGATE_METRICS_ADDRESS=0.0.0.0:9464 \
    TOLLGATE_POLICY_DIR=/app/policies

# Prometheus metrics (TOLLGATE_METRICS_ADDRESS)
EXPOSE 9464
# the official node image ships an unprivileged `node` user; numeric so runAsNonRoot can verify it
USER 1000:1000
CMD ["node", "dist/src/worker.js"]
