// Audit: records filtered by actor, action, decision and time, a page at a
// time, and the hash chain's verification with the first bad record.
import { useState } from "react";
import type { FormEvent } from "react";
import type { AuditRecordEntry, VerifyAuditLogResponse } from "@gen/vivified/admin/v1/audit_query_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { routes } from "../routes";
import { describeError, when } from "../ui";
import type { ScreenProps } from "../ui";

export const PAGE_SIZE = 25;

export interface AuditFilter { actor: string; action: string; decision: string; since: string; until: string }

/** The request a filter and page token make (empty fields are no filter). */
export function auditRequest(filter: AuditFilter, pageToken: string) {
  return {
    actor: filter.actor.trim(),
    action: filter.action.trim(),
    decision: filter.decision,
    startTime: filter.since ? timestampFromDate(new Date(filter.since)) : undefined,
    endTime: filter.until ? timestampFromDate(new Date(filter.until)) : undefined,
    pageSize: PAGE_SIZE,
    pageToken,
  };
}

/** What a verification says: intact, or the first bad record's seq and what is wrong with it. */
export function verifySummary(verify: VerifyAuditLogResponse): string {
  return verify.intact
    ? `Intact: ${verify.recordCount} records verified.`
    : `Broken: first bad record is seq ${verify.firstBadSeq} (${verify.problem}); ${verify.recordCount} records checked.`;
}

export function Audit({ client, can }: ScreenProps) {
  const [filter, setFilter] = useState<AuditFilter>({ actor: "", action: "", decision: "", since: "", until: "" });
  const [records, setRecords] = useState<AuditRecordEntry[] | null>(null);
  const [pages, setPages] = useState<string[]>([""]);
  const [next, setNext] = useState("");
  const [verify, setVerify] = useState<VerifyAuditLogResponse | null>(null);
  const [error, setError] = useState("");

  const fetchPage = async (stack: string[]) => {
    try {
      const reply = await client.call(routes.listAuditRecords, auditRequest(filter, stack[stack.length - 1]));
      setRecords(reply.records);
      setNext(reply.nextPageToken);
      setPages(stack);
      setError("");
    } catch (err) {
      setError(describeError(err));
    }
  };
  const search = (event: FormEvent) => {
    event.preventDefault();
    void fetchPage([""]);
  };
  const runVerify = async () => {
    try {
      setVerify(await client.call(routes.verifyAuditLog, {}));
    } catch (err) {
      setError(describeError(err));
    }
  };
  const field = (key: keyof AuditFilter, label: string, type = "text") => (
    <div className="field">
      <label htmlFor={`audit-${key}`}>{label}</label>
      <input id={`audit-${key}`} type={type} value={filter[key]} onChange={(e) => setFilter({ ...filter, [key]: e.target.value })} />
    </div>
  );

  return (
    <section aria-labelledby="audit-heading">
      <h1 id="audit-heading">Audit</h1>
      <form className="panel filters" onSubmit={search} aria-label="Audit filters">
        {field("actor", "Actor")}
        {field("action", "Action (gRPC method)")}
        <div className="field">
          <label htmlFor="audit-decision">Decision</label>
          <select id="audit-decision" value={filter.decision} onChange={(e) => setFilter({ ...filter, decision: e.target.value })}>
            <option value="">any</option><option value="allow">allow</option><option value="deny">deny</option>
          </select>
        </div>
        {field("since", "From", "datetime-local")}
        {field("until", "Until", "datetime-local")}
        <button type="submit">Search</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      {records && (
        <>
          <table data-testid="audit-records">
            <caption>Audit records, page {pages.length}</caption>
            <thead><tr><th scope="col">Seq</th><th scope="col">Time</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Resource</th><th scope="col">Decision</th><th scope="col">Rule / reason</th></tr></thead>
            <tbody>
              {records.map((r) => (
                <tr key={String(r.seq)} data-seq={String(r.seq)}>
                  <th scope="row">{String(r.seq)}</th>
                  <td>{when(r.recordTime)}</td>
                  <td>{r.actor}</td>
                  <td className="wrap">{r.action}</td>
                  <td>{r.resource}</td>
                  <td>{r.decision}</td>
                  <td>{[r.ruleId, r.reason].filter(Boolean).join(" / ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p>{records.length === 0 && "No records match."}</p>
          <div className="row">
            <button type="button" disabled={pages.length < 2} onClick={() => void fetchPage(pages.slice(0, -1))}>Previous page</button>
            <button type="button" disabled={!next} onClick={() => void fetchPage([...pages, next])}>Next page</button>
          </div>
        </>
      )}
      {can.can(routes.verifyAuditLog) && (
        <div className="panel">
          <h2>Hash chain</h2>
          <button type="button" onClick={() => void runVerify()}>Verify the chain</button>
          {verify && (
            <p role="status" data-testid="audit-verify">
              {verifySummary(verify)}
            </p>
          )}
        </div>
      )}
    </section>
  );
}
