// Plugins: the list, enable/disable/revoke with a reason, and approval from an
// uploaded manifest (its sha256, the traits it asks for and those granted, then
// the join token, shown once).
import { useState } from "react";
import type { FormEvent } from "react";
import { PluginStatus } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import type { ApprovePluginResponse } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import { PluginManifestSchema } from "@gen/vivified/manifest/v1/manifest_pb.js";
import type { PluginManifest } from "@gen/vivified/manifest/v1/manifest_pb.js";
import { fromJson } from "@bufbuild/protobuf";
import type { JsonValue } from "@bufbuild/protobuf";
import { routes } from "../routes";
import { describeError, healthName, statusName, useFocus, usePlugins } from "../ui";
import type { ScreenProps } from "../ui";

type Action = "disable" | "enable" | "revoke";

/** A manifest file (YAML, or JSON which is YAML) read through the contract's schema: unknown keys are refused.
 * The YAML parser is its own chunk, fetched the first time a manifest is read (the rest of the console never needs it). */
export async function parseManifest(text: string): Promise<PluginManifest> {
  const { parse } = await import("yaml");
  const value = parse(text) as JsonValue;
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("the manifest is not a mapping");
  return fromJson(PluginManifestSchema, value);
}

export async function sha256Hex(bytes: ArrayBuffer): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function Approve({ client, onApproved }: Pick<ScreenProps, "client"> & { onApproved: () => Promise<void> }) {
  const [manifest, setManifest] = useState<PluginManifest | null>(null);
  const [fileSha, setFileSha] = useState("");
  const [granted, setGranted] = useState<Set<string>>(new Set());
  const [error, setError] = useState("");
  const [done, setDone] = useState<ApprovePluginResponse | null>(null);
  const tokenRef = useFocus<HTMLElement>(done);

  const read = async (file: File | undefined) => {
    setError("");
    setDone(null);
    setManifest(null);
    if (!file) return;
    try {
      const bytes = await file.arrayBuffer();
      const parsed = await parseManifest(new TextDecoder().decode(bytes));
      setFileSha(await sha256Hex(bytes));
      setManifest(parsed);
      setGranted(new Set(parsed.traits));
    } catch (err) {
      setError(`The manifest cannot be read: ${describeError(err)}`);
    }
  };

  const approve = async (event: FormEvent) => {
    event.preventDefault();
    if (!manifest) return;
    try {
      setDone(await client.call(routes.approvePlugin, { manifest, grantedTraits: manifest.traits.filter((t) => granted.has(t)) }));
      await onApproved();
    } catch (err) {
      setError(describeError(err));
    }
  };

  return (
    <form className="panel" onSubmit={(e) => void approve(e)} aria-labelledby="approve-title">
      <h2 id="approve-title">Approve a plugin</h2>
      <label htmlFor="manifest-file">Manifest file (YAML or JSON)</label>
      <input id="manifest-file" type="file" accept=".yaml,.yml,.json,application/json,text/yaml"
        onChange={(e) => void read(e.target.files?.[0])} />
      {manifest && !done && (
        <>
          <dl className="facts">
            <dt>Plugin</dt><dd data-testid="approve-id">{manifest.id} {manifest.version}</dd>
            <dt>File sha256</dt><dd data-testid="approve-file-sha"><code>{fileSha}</code></dd>
            <dt>Requested traits</dt><dd data-testid="approve-requested">{manifest.traits.join(", ") || "none"}</dd>
          </dl>
          <fieldset>
            <legend>Traits to grant</legend>
            {manifest.traits.map((t) => (
              <label key={t} className="check">
                <input type="checkbox" checked={granted.has(t)} onChange={(e) => {
                  const next = new Set(granted);
                  if (e.target.checked) next.add(t); else next.delete(t);
                  setGranted(next);
                }} /> {t}
              </label>
            ))}
          </fieldset>
          <button type="submit">Approve {manifest.id}</button>
        </>
      )}
      {done && (
        <div data-testid="approved" role="status">
          <p>Approved. Manifest sha256 (as the core recorded it): <code data-testid="approved-sha">{done.manifestSha256}</code></p>
          <p>Granted traits: <span data-testid="approved-traits">{done.grantedTraits.join(", ") || "none"}</span></p>
          <p>Join token, shown this once (give it to the plugin's host):</p>
          <code tabIndex={-1} ref={tokenRef} className="secret" data-testid="join-token">{done.joinToken}</code>
        </div>
      )}
      {error && <p role="alert" className="error">{error}</p>}
    </form>
  );
}

export function Plugins({ client, can }: ScreenProps) {
  const { plugins, error, reload } = usePlugins(client, true);
  const [acting, setActing] = useState<{ plugin: string; action: Action } | null>(null);
  const [reason, setReason] = useState("");
  const [result, setResult] = useState("");
  const reasonRef = useFocus<HTMLInputElement>(acting);
  const label = { disable: "Disable", enable: "Enable", revoke: "Revoke" };

  const act = async (event: FormEvent) => {
    event.preventDefault();
    if (acting === null) return;
    try {
      const request = { pluginId: acting.plugin, reason };
      // One call per action: each route has its own request and response types.
      const reply = acting.action === "disable" ? await client.call(routes.disablePlugin, request)
        : acting.action === "enable" ? await client.call(routes.enablePlugin, request)
          : await client.call(routes.revokePlugin, request);
      setResult(`${acting.plugin} is now ${statusName(reply.plugin?.status ?? PluginStatus.UNSPECIFIED)}.`);
      setActing(null);
      setReason("");
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };

  const button = (pluginId: string, action: Action) => (
    <button type="button" onClick={() => setActing({ plugin: pluginId, action })}>
      {label[action]}<span className="visually-hidden"> {pluginId}</span></button>
  );

  return (
    <section aria-labelledby="plugins-heading">
      <h1 id="plugins-heading">Plugins</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="plugin-result">{result}</p>
      <table>
        <caption>Registered plugins</caption>
        <thead><tr><th scope="col">Plugin</th><th scope="col">Status</th><th scope="col">Health</th><th scope="col">Traits</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          {(plugins ?? []).map((p) => (
            <tr key={p.pluginId} data-plugin={p.pluginId}>
              <th scope="row">{p.pluginId}</th>
              <td data-testid="status">{statusName(p.status)}</td>
              <td>{healthName(p.health)}</td>
              <td>{p.grantedTraits.join(", ")}</td>
              <td className="actions">
                {p.status !== PluginStatus.DISABLED && p.status !== PluginStatus.REVOKED && can.can(routes.disablePlugin)
                  && button(p.pluginId, "disable")}
                {p.status === PluginStatus.DISABLED && can.can(routes.enablePlugin) && button(p.pluginId, "enable")}
                {p.status !== PluginStatus.REVOKED && can.can(routes.revokePlugin) && button(p.pluginId, "revoke")}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {acting && (
        <form className="panel" onSubmit={(e) => void act(e)} aria-labelledby="act-title">
          <h2 id="act-title">{label[acting.action]} {acting.plugin}</h2>
          <label htmlFor="reason">Reason (recorded in the audit log)</label>
          <input id="reason" ref={reasonRef} required minLength={3} value={reason} onChange={(e) => setReason(e.target.value)} />
          <div className="row">
            <button type="submit">{label[acting.action]}</button>
            <button type="button" onClick={() => setActing(null)}>Cancel</button>
          </div>
        </form>
      )}
      {can.can(routes.approvePlugin) && <Approve client={client} onApproved={reload} />}
    </section>
  );
}
