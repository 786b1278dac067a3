// Dashboard: core reachability, plugins by status and health, the latest
// denials and the event backlog (each card only when WhoAmI allows its method).
import { useCallback } from "react";
import { routes } from "../routes";
import { healthName, statusName, useLoad, usePlugins, when } from "../ui";
import type { ScreenProps } from "../ui";

/** Denials shown on the dashboard (newest first); the Audit screen has the rest. */
export const RECENT_DENIALS = 5;

export function count<T>(items: T[], key: (item: T) => string): [string, number][] {
  const counts = new Map<string, number>();
  for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
  return [...counts.entries()].sort();
}

export function Dashboard({ client, me, can, answeredMs }: ScreenProps) {
  const allowed = can.can(routes.listPlugins);
  const { plugins, error } = usePlugins(client, allowed);
  const canAudit = can.can(routes.listAuditRecords);
  const canEvents = can.can(routes.listSubscriptions);
  const loadDenials = useCallback(async () =>
    (await client.call(routes.listAuditRecords, { decision: "deny", pageSize: RECENT_DENIALS })).records, [client]);
  const denials = useLoad(loadDenials, canAudit);
  const loadBacklog = useCallback(async () =>
    (await client.call(routes.listSubscriptions, {})).subscriptions, [client]);
  const backlog = useLoad(loadBacklog, canEvents);
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
        {canAudit && (
          <article className="card" aria-labelledby="denials-title">
            <h2 id="denials-title">Recent denials</h2>
            {denials.error && <p role="alert" className="error">{denials.error}</p>}
            {denials.data && (denials.data.length === 0 ? <p data-testid="recent-denials">None.</p> : (
              <ul data-testid="recent-denials">{denials.data.map((r) => (
                <li key={String(r.seq)} className="wrap">{when(r.recordTime)} {r.actor} {r.action} ({r.reason || r.ruleId})</li>
              ))}</ul>
            ))}
          </article>
        )}
        {canEvents && (
          <article className="card" aria-labelledby="backlog-title">
            <h2 id="backlog-title">Event backlog</h2>
            {backlog.error && <p role="alert" className="error">{backlog.error}</p>}
            {backlog.data && (
              <p data-testid="event-backlog">
                {String(backlog.data.reduce((sum, s) => sum + BigInt(s.undelivered), 0n))} undelivered
                in {backlog.data.length} subscription{backlog.data.length === 1 ? "" : "s"}.
              </p>
            )}
          </article>
        )}
      </div>
    </section>
  );
}
