export const wait = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves once `check` holds, trying every `step` ms; rejects after `ms` (a behavioural deadline, not a speed bound). */
export async function until(check: () => boolean | Promise<boolean>, ms = 5_000, step = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await wait(step);
  }
}
