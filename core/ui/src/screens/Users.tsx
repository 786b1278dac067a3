// Users: list, create (with roles), change roles, disable, and reset MFA (with
// a confirmation and a reason for the audit log) for a user who lost their
// authenticator. Each action is shown only when WhoAmI allows its method.
import { useCallback, useState } from "react";
import type { FormEvent } from "react";
import { routes } from "../routes";
import { describeError, useFocus, useLoad, words } from "../ui";
import type { ScreenProps } from "../ui";

export function Users({ client, can }: ScreenProps) {
  const load = useCallback(async () => (await client.call(routes.listUsers, { pageSize: 200 })).users, [client]);
  const { data: users, error, reload } = useLoad(load);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [roles, setRoles] = useState("viewer");
  const [editing, setEditing] = useState<{ userId: string; roles: string } | null>(null);
  const [result, setResult] = useState("");
  const [resetting, setResetting] = useState<{ userId: string; username: string } | null>(null);
  const [reason, setReason] = useState("");
  const reasonRef = useFocus<HTMLInputElement>(resetting);

  const run = async (what: () => Promise<string>) => {
    try {
      setResult(await what());
      await reload();
    } catch (err) {
      setResult(describeError(err));
    }
  };
  const create = (event: FormEvent) => {
    event.preventDefault();
    void run(async () => {
      const made = await client.call(routes.createUser, { username, password, roles: words(roles) });
      setUsername("");
      setPassword("");
      return `Created ${made.user?.username ?? username}.`;
    });
  };
  const saveRoles = (event: FormEvent) => {
    event.preventDefault();
    if (!editing) return;
    void run(async () => {
      const updated = await client.call(routes.updateUser, {
        userId: editing.userId, roles: words(editing.roles), updateMask: { paths: ["roles"] },
      });
      setEditing(null);
      return `${updated.user?.username ?? editing.userId} now has roles ${updated.user?.roles.join(", ")}.`;
    });
  };

  const resetMfa = (event: FormEvent) => {
    event.preventDefault();
    if (!resetting) return;
    void run(async () => {
      await client.call(routes.resetUserMfa, { userId: resetting.userId, reason });
      setResetting(null);
      setReason("");
      return `${resetting.username}'s MFA is reset and their sessions ended.`;
    });
  };

  return (
    <section aria-labelledby="users-heading">
      <h1 id="users-heading">Users</h1>
      {error && <p role="alert" className="error">{error}</p>}
      <p role="status" aria-live="polite" data-testid="users-result">{result}</p>
      <table>
        <caption>Users</caption>
        <thead><tr><th scope="col">User</th><th scope="col">Roles</th><th scope="col">MFA</th><th scope="col">State</th><th scope="col">Actions</th></tr></thead>
        <tbody>
          {(users ?? []).map((u) => (
            <tr key={u.userId} data-user={u.username}>
              <th scope="row">{u.username}</th>
              <td>{u.roles.join(", ")}</td>
              <td data-testid="user-mfa">{u.mfaEnrolled ? "enrolled" : "none"}</td>
              <td data-testid="user-state">{u.disabled ? "disabled" : u.invited ? "invited" : "active"}</td>
              <td className="actions">
                {can.can(routes.updateUser) && (
                  <button type="button" onClick={() => setEditing({ userId: u.userId, roles: u.roles.join(" ") })}>
                    Roles<span className="visually-hidden"> of {u.username}</span></button>
                )}
                {!u.disabled && can.can(routes.disableUser) && (
                  <button type="button" onClick={() => void run(async () => {
                    await client.call(routes.disableUser, { userId: u.userId });
                    return `${u.username} is disabled.`;
                  })}>Disable<span className="visually-hidden"> {u.username}</span></button>
                )}
                {u.mfaEnrolled && can.can(routes.resetUserMfa) && (
                  <button type="button" onClick={() => { setResetting({ userId: u.userId, username: u.username }); setReason(""); }}>
                    Reset MFA<span className="visually-hidden"> of {u.username}</span></button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing && (
        <form className="panel" onSubmit={saveRoles} aria-labelledby="roles-title">
          <h2 id="roles-title">Roles</h2>
          <label htmlFor="edit-roles">Roles (space or comma separated)</label>
          <input id="edit-roles" autoFocus value={editing.roles} onChange={(e) => setEditing({ ...editing, roles: e.target.value })} />
          <div className="row"><button type="submit">Save roles</button><button type="button" onClick={() => setEditing(null)}>Cancel</button></div>
        </form>
      )}
      {resetting && (
        <form className="panel" onSubmit={resetMfa} aria-labelledby="reset-mfa-title">
          <h2 id="reset-mfa-title">Reset MFA of {resetting.username}</h2>
          <p>This removes {resetting.username}'s authenticator and backup codes and ends their sessions; if their
            roles require MFA, their next sign-in enrols a new authenticator. Check who is asking first.</p>
          <label htmlFor="reset-reason">Reason (recorded in the audit log)</label>
          <input id="reset-reason" ref={reasonRef} required minLength={3} value={reason} onChange={(e) => setReason(e.target.value)} />
          <div className="row">
            <button type="submit">Reset MFA</button>
            <button type="button" onClick={() => setResetting(null)}>Cancel</button>
          </div>
        </form>
      )}
      {can.can(routes.createUser) && (
        <form className="panel" onSubmit={create} aria-labelledby="create-user-title">
          <h2 id="create-user-title">Create a user</h2>
          <label htmlFor="new-username">New username</label>
          <input id="new-username" required value={username} onChange={(e) => setUsername(e.target.value)} />
          <label htmlFor="new-password">Initial password</label>
          <input id="new-password" type="password" autoComplete="new-password" required value={password}
            onChange={(e) => setPassword(e.target.value)} />
          <label htmlFor="new-roles">Roles (space or comma separated)</label>
          <input id="new-roles" value={roles} onChange={(e) => setRoles(e.target.value)} />
          <button type="submit">Create user</button>
        </form>
      )}
    </section>
  );
}
