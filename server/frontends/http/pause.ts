/** Lets a long scan pause between its pages, so that the server answers other requests meanwhile. */
export const yieldToOthers = (): Promise<void> => new Promise((r) => setTimeout(r, 0));
