import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { FormEvent } from "react";
import { LoginStep } from "@gen/vivified/identity/v1/auth_pb.js";
import type { WhoAmIResponse } from "@gen/vivified/identity/v1/auth_pb.js";
import { PluginHealth, PluginStatus } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import type { Plugin } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import { ApiError, Client } from "./api";
import { IdleTimer } from "./idle";
import { Permissions } from "./permissions";
import { routes } from "./routes";
import { Live } from "./screens/Live";

/** Signed out after this long without input. */
export const IDLE_LIMIT_MS = 15 * 60 * 1000;

type Screen = "dashboard" | "plugins" | "live";

/** Moves keyboard focus to the element once it is shown (a new step or form). */
function useFocus<T extends HTMLElement>(when: unknown) {
  const ref = useRef<T>(null);
  useEffect(() => {
    if (when) ref.current?.focus();
  }, [when]);
  return ref;
}

export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    const why = [err.reason, err.ruleId && `rule ${err.ruleId}`].filter(Boolean).join(", ");
    return `${err.status}: ${err.message}${why ? ` (${why})` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export const statusName = (s: PluginStatus): string =>
  (PluginStatus[s] ?? "UNSPECIFIED").toLowerCase();
export const healthName = (h: PluginHealth): string =>
  (PluginHealth[h] ?? "UNSPECIFIED").toLowerCase();

export function App({ client: given }: { client?: Client } = {}) {
  const client = useMemo(() => given ?? new Client(), [given]);
  const [me, setMe] = useState<WhoAmIResponse | null>(null);
  const [answeredMs, setAnsweredMs] = useState<number | null>(null);
  const [notice, setNotice] = useState("");
  const [screen, setScreen] = useState<Screen>("dashboard");

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
  return (
    <>
      <a className="skip" href="#main">Skip to content</a>
      <header className="bar">
        <span className="brand">Vivified</span>
        <nav aria-label="Console">
          <button type="button" aria-current={screen === "dashboard" ? "page" : undefined}
            onClick={() => setScreen("dashboard")}>Dashboard</button>
          {can.can(routes.listPlugins) && (
            <button type="button" aria-current={screen === "plugins" ? "page" : undefined}
              onClick={() => setScreen("plugins")}>Plugins</button>
          )}
          {can.can(routes.watchAuditRecords) && (
            <button type="button" aria-current={screen === "live" ? "page" : undefined}
              onClick={() => setScreen("live")}>Live activity</button>
          )}
        </nav>
        <span className="who">{me.username} ({me.roles.join(", ")})</span>
        <button type="button" onClick={() => void signOut("Signed out.")}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>
        {screen === "live" ? <Live client={client} can={can} /> : screen === "dashboard"
          ? <Dashboard client={client} me={me} can={can} answeredMs={answeredMs} />
          : <Plugins client={client} can={can} />}
      </main>
    </>
  );
}

function SignIn({ client, onSignedIn, notice }: {
  client: Client; onSignedIn: (token: string) => Promise<void>; notice: string;
}) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [mfaToken, setMfaToken] = useState("");
  const [code, setCode] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const codeRef = useFocus<HTMLInputElement>(mfaToken);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (mfaToken) {
        const verified = await client.call(routes.verifyMfa, { mfaToken, code });
        await onSignedIn(verified.tokens?.accessToken ?? "");
        return;
      }
      const reply = await client.call(routes.login, { username, password });
      setPassword("");
      if (reply.step === LoginStep.COMPLETE) await onSignedIn(reply.tokens?.accessToken ?? "");
      else if (reply.step === LoginStep.MFA_REQUIRED) setMfaToken(reply.mfaToken);
      else setError("This account must enrol an authenticator first (vivified users, or the REST API's auth:enrollMfa).");
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="signin">
      <h1>Sign in to Vivified</h1>
      {notice && <p role="status">{notice}</p>}
      <form onSubmit={(e) => void submit(e)} aria-describedby={error ? "signin-error" : undefined}>
        {mfaToken ? (
          <>
            <label htmlFor="code">Authenticator code</label>
            <input id="code" ref={codeRef} name="code" inputMode="numeric" autoComplete="one-time-code" required
              value={code} onChange={(e) => setCode(e.target.value)} />
          </>
        ) : (
          <>
            <label htmlFor="username">Username</label>
            <input id="username" name="username" autoComplete="username" required autoFocus
              value={username} onChange={(e) => setUsername(e.target.value)} />
            <label htmlFor="password">Password</label>
            <input id="password" name="password" type="password" autoComplete="current-password" required
              value={password} onChange={(e) => setPassword(e.target.value)} />
          </>
        )}
        <button type="submit" disabled={busy}>{mfaToken ? "Verify" : "Sign in"}</button>
      </form>
      {error && <p id="signin-error" role="alert" className="error">{error}</p>}
    </main>
  );
}

function usePlugins(client: Client, allowed: boolean) {
  const [plugins, setPlugins] = useState<Plugin[] | null>(null);
  const [error, setError] = useState("");
  const reload = useCallback(async () => {
    if (!allowed) return;
    try {
      setPlugins((await client.call(routes.listPlugins, {})).plugins);
      setError("");
    } catch (err) {
      setError(describeError(err));
    }
  }, [client, allowed]);
  useEffect(() => { void reload(); }, [reload]);
  return { plugins, error, reload };
}

function count<T>(items: T[], key: (item: T) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts.entries()].sort();
}

function Dashboard({ client, me, can, answeredMs }: {
  client: Client; me: WhoAmIResponse; can: Permissions; answeredMs: number | null;
}) {
  const allowed = can.can(routes.listPlugins);
  const { plugins, error } = usePlugins(client, allowed);
  return (
    <section aria-labelledby="dashboard-title">
      <h1 id="dashboard-title">Dashboard</h1>
      <div className="cards">
        <article className="card" aria-labelledby="core-title">
          <h2 id="core-title">Core</h2>
          <p data-testid="core-health">Serving: answered through the REST bridge{answeredMs !== null ? ` in ${answeredMs} ms` : ""}.</p>
          <p>Signed in as <strong>{me.username}</strong>; traits: {me.traits.join(", ") || "none"}.</p>
        </article>
        {allowed && (
          <article className="card" aria-labelledby="plugins-title">
            <h2 id="plugins-title">Plugins</h2>
            {error && <p role="alert" className="error">{error}</p>}
            {plugins && (
              <>
                <h3>By status</h3>
                <ul data-testid="by-status">{count(plugins, (p) => statusName(p.status)).map(([k, n]) => <li key={k}>{k}: {n}</li>)}</ul>
                <h3>By health</h3>
                <ul data-testid="by-health">{count(plugins, (p) => healthName(p.health)).map(([k, n]) => <li key={k}>{k}: {n}</li>)}</ul>
              </>
            )}
          </article>
        )}
      </div>
    </section>
  );
}

function Plugins({ client, can }: { client: Client; can: Permissions }) {
  const { plugins, error, reload } = usePlugins(client, true);
  const [acting, setActing] = useState<{ plugin: string; action: "disable" | "enable" } | null>(null);
  const [reason, setReason] = useState("");
  const [result, setResult] = useState("");
  const reasonRef = useFocus<HTMLInputElement>(acting);

  const act = async (event: FormEvent) => {
    event.preventDefault();
    if (acting === null) return;
    try {
      const request = { pluginId: acting.plugin, reason };
      const reply = acting.action === "disable"
        ? await client.call(routes.disablePlugin, request)
        : await client.call(routes.enablePlugin, request);
      setResult(`${acting.plugin} is now ${statusName(reply.plugin?.status ?? PluginStatus.UNSPECIFIED)}.`);
      setActing(null);
      setReason("");
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };

  return (
    <section aria-labelledby="plugins-heading">
      <h1 id="plugins-heading">Plugins</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="plugin-result">{result}</p>
      <table>
        <caption>Registered plugins</caption>
        <thead><tr><th scope="col">Plugin</th><th scope="col">Status</th><th scope="col">Health</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          {(plugins ?? []).map((p) => (
            <tr key={p.pluginId} data-plugin={p.pluginId}>
              <th scope="row">{p.pluginId}</th>
              <td data-testid="status">{statusName(p.status)}</td>
              <td>{healthName(p.health)}</td>
              <td>
                {p.status !== PluginStatus.DISABLED && p.status !== PluginStatus.REVOKED && can.can(routes.disablePlugin) && (
                  <button type="button" onClick={() => setActing({ plugin: p.pluginId, action: "disable" })}>
                    Disable<span className="visually-hidden"> {p.pluginId}</span></button>
                )}
                {p.status === PluginStatus.DISABLED && can.can(routes.enablePlugin) && (
                  <button type="button" onClick={() => setActing({ plugin: p.pluginId, action: "enable" })}>
                    Enable<span className="visually-hidden"> {p.pluginId}</span></button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {acting && (
        <form className="panel" onSubmit={(e) => void act(e)} aria-labelledby="act-title">
          <h2 id="act-title">{acting.action === "disable" ? "Disable" : "Enable"} {acting.plugin}</h2>
          <label htmlFor="reason">Reason (recorded in the audit log)</label>
          <input id="reason" ref={reasonRef} required minLength={3} value={reason} onChange={(e) => setReason(e.target.value)} />
          <div className="row">
            <button type="submit">{acting.action === "disable" ? "Disable" : "Enable"}</button>
            <button type="button" onClick={() => setActing(null)}>Cancel</button>
          </div>
        </form>
      )}
    </section>
  );
}
