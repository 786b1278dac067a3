import { IdleTimer } from "../src/idle";
import { Permissions } from "../src/permissions";
import { routes } from "../src/routes";

describe("IdleTimer", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("signs out after the limit without input, and input restarts the countdown", () => {
    const idle = vi.fn();
    const target = new EventTarget();
    const stop = new IdleTimer(1000, idle, window).watch(target);
    vi.advanceTimersByTime(900);
    target.dispatchEvent(new Event("keydown"));
    vi.advanceTimersByTime(900);
    expect(idle).not.toHaveBeenCalled();
    vi.advanceTimersByTime(100);
    expect(idle).toHaveBeenCalledTimes(1);
    stop();
  });

  it("stops listening when unwatched", () => {
    const idle = vi.fn();
    const stop = new IdleTimer(1000, idle, window).watch(new EventTarget());
    stop();
    vi.advanceTimersByTime(5000);
    expect(idle).not.toHaveBeenCalled();
  });
});

describe("Permissions", () => {
  it("allows only the methods WhoAmI listed", () => {
    const can = new Permissions(["/vivified.admin.v1.PluginAdminService/ListPlugins"]);
    expect(can.can(routes.listPlugins)).toBe(true);
    expect(can.can(routes.disablePlugin)).toBe(false);
  });
});
