import type { Scheduler } from "../../server/authority/responders.ts";

/** A promise the test opens when it chooses: the code under test awaits `passed`; the test calls `open()`. */
export function gate(): { passed: Promise<void>; open(): void } {
  let open = () => {};
  const passed = new Promise<void>((r) => {
    open = r;
  });
  return { passed, open };
}

/** A scheduler that runs nothing by itself: each timer's callback is captured, in order, for the test to call. */
export function manualScheduler(): { scheduler: Scheduler; ticks: (() => void)[] } {
  const ticks: (() => void)[] = [];
  const capture = (_ms: number, run: () => void) => {
    ticks.push(run);
    return { cancel: () => undefined };
  };
  return { scheduler: { every: capture, after: capture }, ticks };
}
