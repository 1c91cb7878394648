/** Values a frontend hands to the request log through the hono context. */
export interface AppEnv {
  Variables: {
    /** The audit reason of a refused request, e.g. "token_used". */
    refusal: string;
  };
}
