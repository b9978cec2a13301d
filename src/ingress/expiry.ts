// setTimeout's limit (~24.8 days): a later expiry is reached in steps.
const kMaxTimer = 2 ** 31 - 1;

/** Calls `onExpired` at `expiresAt` (Unix ms), however far away; cancel() when the connection ends first. */
export class ExpiryTimer {
  private timer: NodeJS.Timeout | undefined;

  constructor(expiresAt: number | null, onExpired: () => void) {
    if (expiresAt === null) return;
    const arm = (): void => {
      this.timer = setTimeout(() => (Date.now() < expiresAt ? arm() : onExpired()), Math.min(kMaxTimer, Math.max(0, expiresAt - Date.now())));
    };
    arm();
  }

  cancel(): void {
    clearTimeout(this.timer);
  }
}
