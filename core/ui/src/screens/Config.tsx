// Configuration: a plugin's settings as a form from its manifest's config
// schema (secrets write-only: never shown, only replaced), and the core's
// setting overrides, each change with a reason, and their history.
import { useCallback, useState } from "react";
import type { FormEvent } from "react";
import { ConfigFieldType } from "@gen/vivified/manifest/v1/manifest_pb.js";
import type { ConfigValue } from "@gen/vivified/config/v1/config_pb.js";
import { routes } from "../routes";
import { describeError, useLoad, usePlugins, when } from "../ui";
import type { ScreenProps } from "../ui";

/** The input a manifest field type is edited with. */
export function inputType(type: ConfigFieldType): "password" | "number" | "checkbox" | "text" {
  if (type === ConfigFieldType.SECRET) return "password";
  if (type === ConfigFieldType.INT) return "number";
  if (type === ConfigFieldType.BOOL) return "checkbox";
  return "text";
}

function PluginField({ value, onSave }: { value: ConfigValue; onSave: (v: string, reason: string) => Promise<void> }) {
  const secret = value.type === ConfigFieldType.SECRET;
  const [text, setText] = useState(secret ? "" : value.value);
  const [reason, setReason] = useState("");
  const kind = inputType(value.type);
  const id = `cfg-${value.key}`;
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void onSave(text, reason).then(() => { if (secret) setText(""); setReason(""); });
  };
  return (
    <form className="panel" onSubmit={submit} aria-label={`Setting ${value.key}`} data-config={value.key}>
      {kind === "checkbox" ? (
        <label className="check" htmlFor={id}>
          <input id={id} type="checkbox" checked={text === "true"} onChange={(e) => setText(e.target.checked ? "true" : "false")} />
          {" "}{value.key}{value.required ? " (required)" : ""}
        </label>
      ) : (
        <>
          <label htmlFor={id}>{value.key}{value.required ? " (required)" : ""}{secret ? " — secret, write-only" : ""}</label>
          <input id={id} type={kind} value={text} autoComplete="off" required={value.required && !secret}
            placeholder={secret ? (value.value ? "set; type a new value to replace it" : "not set") : ""}
            onChange={(e) => setText(e.target.value)} />
        </>
      )}
      <label htmlFor={`${id}-reason`}>Reason for {value.key}</label>
      <input id={`${id}-reason`} required value={reason} onChange={(e) => setReason(e.target.value)} />
      <p className="muted">{value.updateActor && `Last set by ${value.updateActor} at ${when(value.updateTime)}`}</p>
      <button type="submit">Save {value.key}</button>
    </form>
  );
}

function PluginConfig({ client, can, pluginId }: Pick<ScreenProps, "client" | "can"> & { pluginId: string }) {
  const load = useCallback(async () => {
    const [config, history] = await Promise.all([
      client.call(routes.getPluginConfig, { pluginId }),
      can.can(routes.listPluginConfigHistory)
        ? client.call(routes.listPluginConfigHistory, { pluginId, pageSize: 20 }).then((h) => h.changes)
        : Promise.resolve([]),
    ]);
    return { values: config.values, history };
  }, [client, can, pluginId]);
  const { data, error, reload } = useLoad(load);
  const [result, setResult] = useState("");
  const save = async (key: string, value: string, reason: string) => {
    try {
      await client.call(routes.setPluginConfigValue, { pluginId, key, value, reason });
      setResult(`${key} saved.`);
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };
  return (
    <div>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite">{result}</p>
      {data && data.values.length === 0 && <p>{pluginId}'s manifest declares no settings.</p>}
      {data?.values.map((v) => (
        <PluginField key={`${v.key}-${v.updateTime?.seconds ?? 0}`} value={v}
          onSave={can.can(routes.setPluginConfigValue) ? (value, reason) => save(v.key, value, reason) : async () => {}} />
      ))}
      {data && data.history.length > 0 && (
        <table>
          <caption>History of {pluginId}'s settings</caption>
          <thead><tr><th scope="col">Time</th><th scope="col">Key</th><th scope="col">By</th><th scope="col">Reason</th></tr></thead>
          <tbody>{data.history.map((c, i) => (
            <tr key={i}><td>{when(c.changeTime)}</td><th scope="row">{c.key}</th><td>{c.changeActor}</td><td>{c.reason}</td></tr>
          ))}</tbody>
        </table>
      )}
    </div>
  );
}

function CoreSettings({ client, can }: Pick<ScreenProps, "client" | "can">) {
  const load = useCallback(async () => {
    const [settings, history] = await Promise.all([
      client.call(routes.listCoreSettings, {}),
      can.can(routes.listCoreSettingHistory)
        ? client.call(routes.listCoreSettingHistory, { pageSize: 20 }).then((h) => h.changes)
        : Promise.resolve([]),
    ]);
    return { settings: settings.settings, history };
  }, [client, can]);
  const { data, error, reload } = useLoad(load);
  const [editing, setEditing] = useState<{ key: string; value: string; reason: string; clear: boolean } | null>(null);
  const [result, setResult] = useState("");
  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (!editing) return;
    try {
      const reply = editing.clear
        ? await client.call(routes.clearCoreSetting, { key: editing.key, reason: editing.reason })
        : await client.call(routes.setCoreSetting, { key: editing.key, value: editing.value, reason: editing.reason });
      const s = reply.setting;
      setResult(`${editing.key} is now ${s?.effectiveValue ?? ""}${s?.pendingRestart ? " (applies at the next restart)" : ""}.`);
      setEditing(null);
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };
  return (
    <div>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="core-setting-result">{result}</p>
      <table>
        <caption>Core settings</caption>
        <thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Source</th><th scope="col">Override</th><th scope="col">Actions</th></tr></thead>
        <tbody>{(data?.settings ?? []).map((s) => (
          <tr key={s.key} data-setting={s.key}>
            <th scope="row" className="wrap">{s.key}</th>
            <td className="wrap">{s.effectiveValue}</td>
            <td>{s.source}</td>
            <td>{s.hasOverride ? `by ${s.overrideActor}: ${s.overrideReason}` : ""}</td>
            <td className="actions">
              {can.can(routes.setCoreSetting) && (
                <button type="button" onClick={() => setEditing({ key: s.key, value: s.effectiveValue, reason: "", clear: false })}>
                  Override<span className="visually-hidden"> {s.key}</span></button>
              )}
              {s.hasOverride && can.can(routes.clearCoreSetting) && (
                <button type="button" onClick={() => setEditing({ key: s.key, value: "", reason: "", clear: true })}>
                  Clear<span className="visually-hidden"> {s.key}</span></button>
              )}
            </td>
          </tr>
        ))}</tbody>
      </table>
      {editing && (
        <form className="panel" onSubmit={(e) => void submit(e)} aria-labelledby="override-title">
          <h2 id="override-title">{editing.clear ? "Clear the override of" : "Override"} {editing.key}</h2>
          {!editing.clear && (
            <>
              <label htmlFor="override-value">Value</label>
              <input id="override-value" autoFocus required value={editing.value} onChange={(e) => setEditing({ ...editing, value: e.target.value })} />
            </>
          )}
          <label htmlFor="override-reason">Reason (recorded with the change)</label>
          <input id="override-reason" required value={editing.reason} onChange={(e) => setEditing({ ...editing, reason: e.target.value })} />
          <div className="row"><button type="submit">{editing.clear ? "Clear" : "Save"}</button><button type="button" onClick={() => setEditing(null)}>Cancel</button></div>
        </form>
      )}
      {data && data.history.length > 0 && (
        <table>
          <caption>History of core settings</caption>
          <thead><tr><th scope="col">Time</th><th scope="col">Key</th><th scope="col">Old</th><th scope="col">New</th><th scope="col">By</th><th scope="col">Reason</th></tr></thead>
          <tbody>{data.history.map((c, i) => (
            <tr key={i}><td>{when(c.changeTime)}</td><th scope="row" className="wrap">{c.key}</th><td>{c.oldValue}</td><td>{c.newValue}</td><td>{c.changeActor}</td><td>{c.reason}</td></tr>
          ))}</tbody>
        </table>
      )}
    </div>
  );
}

export function Config({ client, can }: ScreenProps) {
  const { plugins } = usePlugins(client, can.can(routes.listPlugins));
  const [pluginId, setPluginId] = useState("");
  return (
    <section aria-labelledby="config-heading">
      <h1 id="config-heading">Configuration</h1>
      {can.can(routes.getPluginConfig) && (
        <>
          <h2>Plugin settings</h2>
          <label htmlFor="config-plugin">Plugin</label>
          <select id="config-plugin" value={pluginId} onChange={(e) => setPluginId(e.target.value)}>
            <option value="">choose a plugin</option>
            {(plugins ?? []).map((p) => <option key={p.pluginId} value={p.pluginId}>{p.pluginId}</option>)}
          </select>
          {pluginId && <PluginConfig key={pluginId} client={client} can={can} pluginId={pluginId} />}
        </>
      )}
      {can.can(routes.listCoreSettings) && (
        <>
          <h2>Core settings</h2>
          <CoreSettings client={client} can={can} />
        </>
      )}
    </section>
  );
}
