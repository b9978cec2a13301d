# fleetgate: built and run on node:20-bookworm-slim, the platform the tests run on (Debian 12, Node 20).
# Usage, ports and modes: docs/DOCKER.md. test/unit/dockerfile.test.ts checks this file against the config defaults.
# Build stage: compile TypeScript and the native addons (better-sqlite3 builds from source under npm 11's allowScripts).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
# npm ci runs the root `prepare` script (npm run build) once the sources are in place.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: only production dependencies (already built), the compiled output and the healthcheck.
# Listeners keep their defaults (every address, ports below); FLEETGATE_* variables at `docker run` change them.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    FLEETGATE_STORE=sqlite:/data/fleetgate.db
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY scripts/healthcheck.mjs ./scripts/
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# HTTP + WebSocket (REST API, publish, subscribe, /health, /metrics), HTTPS + WSS, MQTT, MQTT over TLS.
# The TLS ones listen once FLEETGATE_TLS_CERT/KEY name mounted files.
EXPOSE 8080 8443 1883 8883
# GET /health on plain HTTP, or on HTTPS when plain listeners are off (FLEETGATE_PLAIN=off): the script reads the same
# FLEETGATE_* settings as the gateway.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "scripts/healthcheck.mjs"]
# node is PID 1 (exec form, no shell in between): `docker stop`'s SIGTERM and Ctrl-C's SIGINT reach fleetgate's own
# handlers, which close the listeners gracefully. (PID 1 gets no default signal action; handlers are installed.)
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
