// Live activity: audit records as the core commits them, from
// AuditQueryService.WatchAuditRecords through the REST bridge (a server stream
// read with fetch + ReadableStream, newline-delimited JSON). Shown only when
// WhoAmI allows the method; the core refuses it anyway (403) if crafted.
import { useEffect, useRef, useState } from "react";
import type { FormEvent } from "react";
import type { AuditRecordEntry } from "@gen/vivified/admin/v1/audit_query_pb.js";
import { WatchAuditRecordsResponseSchema } from "@gen/vivified/admin/v1/audit_query_pb.js";
import { ApiError } from "../api";
import type { Client } from "../api";
import { readFeed } from "../feed";
import type { Permissions } from "../permissions";
import { routes } from "../routes";

/** Records kept on screen; older ones scroll away. */
export const KEPT = 200;

export interface LiveFilter {
  outcome: string;
  actionPrefix: string;
}

function why(err: unknown): string {
  if (err instanceof ApiError) {
    const detail = [err.reason, err.ruleId && `rule ${err.ruleId}`].filter(Boolean).join(", ");
    return `${err.status === 200 ? "stream ended" : err.status}: ${err.message}${detail ? ` (${detail})` : ""}`;
  }
  return err instanceof Error ? err.message : String(err);
}

export function Live({ client, can }: { client: Client; can: Permissions }) {
  const [filter, setFilter] = useState<LiveFilter>({ outcome: "", actionPrefix: "" });
  const [applied, setApplied] = useState<LiveFilter>({ outcome: "", actionPrefix: "" });
  const [running, setRunning] = useState(true);
  const [records, setRecords] = useState<AuditRecordEntry[]>([]);
  const [state, setState] = useState("Connecting…");
  const allowed = can.can(routes.watchAuditRecords);
  const generation = useRef(0);

  useEffect(() => {
    if (!allowed || !running) return undefined;
    const abort = new AbortController();
    const mine = ++generation.current;
    setState("Connecting…");
    void (async () => {
      try {
        const body = await client.open(routes.watchAuditRecords, applied, abort.signal);
        setState("Live: new records appear as they are committed.");
        for await (const message of readFeed(WatchAuditRecordsResponseSchema, body)) {
          const record = message.record;
          if (record === undefined || mine !== generation.current) continue;
          setRecords((shown) => [record, ...shown].slice(0, KEPT));
        }
        if (!abort.signal.aborted) setState("The feed ended; press Start to watch again.");
      } catch (err) {
        if (!abort.signal.aborted) setState(why(err));
      } finally {
        if (!abort.signal.aborted && mine === generation.current) setRunning(false);
      }
    })();
    return () => abort.abort();
  }, [client, allowed, running, applied]);

  if (!allowed) return null;

  const apply = (event: FormEvent) => {
    event.preventDefault();
    setRecords([]);
    setApplied({ ...filter });
    setRunning(true);
  };

  return (
    <section aria-labelledby="live-title">
      <h1 id="live-title">Live activity</h1>
      <form className="panel" onSubmit={apply} aria-label="Live feed filters">
        <label htmlFor="live-outcome">Outcome (e.g. PERMISSION_DENIED)</label>
        <input id="live-outcome" value={filter.outcome} onChange={(e) => setFilter({ ...filter, outcome: e.target.value })} />
        <label htmlFor="live-prefix">Method prefix (e.g. /vivified.admin.v1.PluginAdminService/)</label>
        <input id="live-prefix" value={filter.actionPrefix}
          onChange={(e) => setFilter({ ...filter, actionPrefix: e.target.value })} />
        <div className="row">
          <button type="submit">{running ? "Apply filters" : "Start"}</button>
          {running && <button type="button" onClick={() => { setRunning(false); setState("Paused."); }}>Pause</button>}
        </div>
      </form>
      <p role="status" aria-live="polite" data-testid="live-state">{state}</p>
      <div className="scroll" role="region" aria-label="Live records" tabIndex={0}>
      <table>
        <caption>Newest first (at most {KEPT})</caption>
        <thead>
          <tr><th scope="col">#</th><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th>
            <th scope="col">Decision</th><th scope="col">Outcome</th><th scope="col">Reason / rule</th></tr>
        </thead>
        <tbody data-testid="live-records">
          {records.map((r) => (
            <tr key={r.seq.toString()} data-action={r.action} data-outcome={r.outcome}>
              <td>{r.seq.toString()}</td>
              <td>{r.recordTime ? new Date(Number(r.recordTime.seconds) * 1000).toISOString().slice(11, 19) : ""}</td>
              <td>{r.actor}</td>
              <td>{r.action}</td>
              <td>{r.decision}</td>
              <td>{r.outcome}</td>
              <td>{[r.reason, r.ruleId].filter(Boolean).join(" / ")}</td>
            </tr>
          ))}
        </tbody>
      </table>
      </div>
    </section>
  );
}
