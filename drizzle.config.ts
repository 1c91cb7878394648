import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "sqlite",
  schema: "./server/adapters/storage/schema.ts",
  out: "./migrations",
});
