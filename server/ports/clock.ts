/** The one source of "now" for the core; tests pass a fixed or stepping clock. */
export interface Clock {
  now(): Date;
}
