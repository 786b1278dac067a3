// Idle logoff: after `limitMs` without keyboard, pointer or touch input the
// session ends (the console calls Logout and forgets the token).
export interface IdleClock {
  setTimeout(fn: () => void, ms: number): number;
  clearTimeout(id: number): void;
}

export const IDLE_EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"] as const;

export class IdleTimer {
  private id: number | null = null;

  constructor(
    private readonly limitMs: number,
    private readonly onIdle: () => void,
    private readonly clock: IdleClock = window,
  ) {}

  /** Starts or restarts the countdown (call on every input). */
  touch = (): void => {
    if (this.id !== null) this.clock.clearTimeout(this.id);
    this.id = this.clock.setTimeout(() => {
      this.id = null;
      this.onIdle();
    }, this.limitMs);
  };

  stop(): void {
    if (this.id !== null) this.clock.clearTimeout(this.id);
    this.id = null;
  }

  /** Listens for input on `target` until the returned function is called. */
  watch(target: Pick<EventTarget, "addEventListener" | "removeEventListener">): () => void {
    for (const name of IDLE_EVENTS) target.addEventListener(name, this.touch, { passive: true });
    this.touch();
    return () => {
      for (const name of IDLE_EVENTS) target.removeEventListener(name, this.touch);
      this.stop();
    };
  }
}
