// API keys: the signed-in user's keys, create with scopes (the key is shown
// once), revoke.
import { useCallback, useState } from "react";
import type { FormEvent } from "react";
import { routes } from "../routes";
import { describeError, useFocus, useLoad, when } from "../ui";
import type { ScreenProps } from "../ui";

export function ApiKeys({ client, can, me }: ScreenProps) {
  const load = useCallback(async () => (await client.call(routes.listApiKeys, {})).keys, [client]);
  const { data: keys, error, reload } = useLoad(load);
  const [name, setName] = useState("");
  const [scopes, setScopes] = useState<Set<string>>(new Set());
  const [days, setDays] = useState("30");
  const [secret, setSecret] = useState("");
  const [result, setResult] = useState("");
  const secretRef = useFocus<HTMLElement>(secret);

  const create = async (event: FormEvent) => {
    event.preventDefault();
    try {
      const made = await client.call(routes.createApiKey, {
        name, scopes: me.traits.filter((t) => scopes.has(t)), ttlSeconds: BigInt(Math.round(Number(days) * 86400)),
      });
      setSecret(made.apiKey);
      setResult(`Created ${made.key?.keyId ?? name}.`);
      setName("");
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };
  const revoke = async (keyId: string) => {
    try {
      await client.call(routes.revokeApiKey, { keyId });
      setResult(`${keyId} is revoked.`);
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };

  return (
    <section aria-labelledby="keys-heading">
      <h1 id="keys-heading">API keys</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="keys-result">{result}</p>
      {secret && (
        <div className="panel" data-testid="new-key">
          <p>The new key, shown this once (send it as the X-Api-Key header):</p>
          <code tabIndex={-1} ref={secretRef} className="secret">{secret}</code>
          <button type="button" onClick={() => setSecret("")}>I have stored it</button>
        </div>
      )}
      <table>
        <caption>Your API keys</caption>
        <thead><tr><th scope="col">Key</th><th scope="col">Name</th><th scope="col">Scopes</th><th scope="col">Expires</th><th scope="col">State</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          {(keys ?? []).map((k) => (
            <tr key={k.keyId} data-key={k.name}>
              <th scope="row">{k.keyId}</th>
              <td>{k.name}</td>
              <td>{k.scopes.join(", ")}</td>
              <td>{when(k.expireTime)}</td>
              <td>{k.revoked ? "revoked" : "active"}</td>
              <td>{!k.revoked && can.can(routes.revokeApiKey) && (
                <button type="button" onClick={() => void revoke(k.keyId)}>Revoke<span className="visually-hidden"> {k.name}</span></button>
              )}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {can.can(routes.createApiKey) && (
        <form className="panel" onSubmit={(e) => void create(e)} aria-labelledby="create-key-title">
          <h2 id="create-key-title">Create an API key</h2>
          <label htmlFor="key-name">Key name</label>
          <input id="key-name" required value={name} onChange={(e) => setName(e.target.value)} />
          <fieldset>
            <legend>Scopes (your traits the key may use)</legend>
            {me.traits.map((t) => (
              <label key={t} className="check">
                <input type="checkbox" checked={scopes.has(t)} onChange={(e) => {
                  const next = new Set(scopes);
                  if (e.target.checked) next.add(t); else next.delete(t);
                  setScopes(next);
                }} /> {t}
              </label>
            ))}
          </fieldset>
          <label htmlFor="key-days">Lifetime in days</label>
          <input id="key-days" type="number" min="1" required value={days} onChange={(e) => setDays(e.target.value)} />
          <button type="submit">Create key</button>
        </form>
      )}
    </section>
  );
}
