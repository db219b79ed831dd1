# syntax=docker/dockerfile:1
# One file, two images: `--target auth` (Tessera, also the one-shot migrate)
# and `--target notes`. Build stage compiles TypeScript; runtime stages carry
# production dependencies only and run as the unprivileged `node` user.

FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json tsconfig.json ./
COPY services/auth/package.json services/auth/
COPY services/notes/package.json services/notes/
COPY bench/package.json bench/
RUN npm ci --no-audit --no-fund
COPY services/auth services/auth
COPY services/notes services/notes
RUN npm run build -w services/auth -w services/notes

FROM node:24-slim AS manifests
WORKDIR /app
COPY package.json package-lock.json ./
COPY services/auth/package.json services/auth/
COPY services/notes/package.json services/notes/
COPY bench/package.json bench/

FROM manifests AS auth-deps
RUN npm ci --omit=dev -w services/auth --no-audit --no-fund

FROM manifests AS notes-deps
RUN npm ci --omit=dev -w services/notes --no-audit --no-fund

# What both runtime images share: production mode, the unprivileged `node`
# user, and a health check of the image's own PORT and HEALTH_PATH.
FROM node:24-slim AS runtime
ENV NODE_ENV=production HOST=0.0.0.0
WORKDIR /app
USER node
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + process.env.PORT + process.env.HEALTH_PATH).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

FROM runtime AS auth
ENV PORT=8080 HEALTH_PATH=/readyz
COPY --from=auth-deps /app ./
# dist/db/migrate.js finds the migrations at the repository root.
COPY migrations migrations
COPY services/auth/bin services/auth/bin
COPY --from=build /app/services/auth/dist services/auth/dist
EXPOSE 8080
CMD ["node", "services/auth/dist/server.js"]

FROM runtime AS notes
ENV PORT=8201 HEALTH_PATH=/readyz
COPY --from=notes-deps /app ./
COPY --from=build /app/services/notes/dist services/notes/dist
EXPOSE 8201
CMD ["node", "services/notes/dist/server.js"]
