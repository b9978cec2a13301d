# fleetgate: built and run on node:20-bookworm-slim, the platform the tests run on (Debian 12, Node 20).
# Build stage: compile TypeScript and the native addons (better-sqlite3 builds from source under npm 11's allowScripts).
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY src ./src
# npm ci runs the root `prepare` script (tsc) once the sources are in place.
RUN npm ci --no-audit --no-fund \
 && npm prune --omit=dev --no-audit --no-fund

# Runtime stage: only production dependencies (already built) and the compiled output.
FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    FLEETGATE_HOST=0.0.0.0 \
    FLEETGATE_HTTP_PORT=8080 \
    FLEETGATE_MQTT_PORT=1883 \
    FLEETGATE_STORE=sqlite:/data/fleetgate.db
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
# HTTP + WebSocket (REST API, publish, subscribe, /health, /metrics), MQTT
EXPOSE 8080 1883 8443 8883
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:'+(process.env.FLEETGATE_HTTP_PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
STOPSIGNAL SIGTERM
ENTRYPOINT ["node", "dist/main.js"]
CMD ["serve"]
