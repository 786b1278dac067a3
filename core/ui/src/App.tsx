// The console's shell: sign-in, then the nav (screens/nav.ts, filtered by
// WhoAmI's allowed methods), the chosen screen, sign-out and idle logoff.
import { useCallback, useEffect, useMemo, useState } from "react";
import type { WhoAmIResponse } from "@gen/vivified/identity/v1/auth_pb.js";
import { Client } from "./api";
import { IdleTimer } from "./idle";
import { Permissions } from "./permissions";
import { routes } from "./routes";
import { NAV } from "./screens/nav";
import type { NavEntry } from "./screens/nav";
import { SignIn } from "./SignIn";

export { describeError, healthName, statusName } from "./ui";

/** Signed out after this long without input. */
export const IDLE_LIMIT_MS = 15 * 60 * 1000;

/** The nav entries this user may open. */
export function visibleScreens(can: Permissions, nav: readonly NavEntry[] = NAV): NavEntry[] {
  return nav.filter((entry) => entry.needs === null || can.can(entry.needs));
}

export function App({ client: given }: { client?: Client } = {}) {
  const client = useMemo(() => given ?? new Client(), [given]);
  const [me, setMe] = useState<WhoAmIResponse | null>(null);
  const [answeredMs, setAnsweredMs] = useState<number | null>(null);
  const [notice, setNotice] = useState("");
  const [screen, setScreen] = useState("dashboard");

  const signOut = useCallback(async (why: string) => {
    try {
      if (client.signedIn) await client.call(routes.logout, {});
    } catch {
      // The session ends here whatever the server said: the token is forgotten.
    }
    client.setToken("");
    setMe(null);
    setScreen("dashboard");
    setNotice(why);
  }, [client]);

  useEffect(() => {
    if (me === null) return undefined;
    const timer = new IdleTimer(IDLE_LIMIT_MS, () => void signOut("Signed out after 15 minutes without activity."));
    return timer.watch(window);
  }, [me, signOut]);

  const signedIn = async (token: string) => {
    client.setToken(token);
    const started = performance.now();
    const who = await client.call(routes.whoAmI, {});
    setAnsweredMs(Math.round(performance.now() - started));
    setNotice("");
    setMe(who);
  };

  if (me === null) return <SignIn client={client} onSignedIn={signedIn} notice={notice} />;
  const can = new Permissions(me.allowedMethods);
  const shown = visibleScreens(can);
  const current = shown.find((entry) => entry.id === screen) ?? shown[0];
  const Screen = current.screen;
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="bar">
        <span className="brand">Vivified</span>
        <nav aria-label="Console">
          {shown.map((entry) => (
            <button key={entry.id} type="button" aria-current={entry.id === current.id ? "page" : undefined}
              onClick={() => setScreen(entry.id)}>{entry.label}</button>
          ))}
        </nav>
        <span className="who">{me.username} ({me.roles.join(", ")})</span>
        <button type="button" onClick={() => void signOut("Signed out.")}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>
        <Screen key={current.id} client={client} me={me} can={can} answeredMs={answeredMs} />
      </main>
    </>
  );
}
