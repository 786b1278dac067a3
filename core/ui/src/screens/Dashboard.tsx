// Dashboard: core reachability, plugins by status and health.
import { routes } from "../routes";
import { healthName, statusName, usePlugins } from "../ui";
import type { ScreenProps } from "../ui";

export function count<T>(items: T[], key: (item: T) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts.entries()].sort();
}

export function Dashboard({ client, me, can, answeredMs }: ScreenProps) {
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
