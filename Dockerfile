FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY policies ./policies
COPY seeds ./seeds
COPY src ./src
USER node
EXPOSE 3000
CMD ["node", "src/main.ts"]
