// Users: list, create (with roles), change roles, disable. Resetting a user's
// MFA has no RPC in UserAdminService yet, so the console offers none.
import { useCallback, useState } from "react";
import type { FormEvent } from "react";
import { routes } from "../routes";
import { describeError, useLoad, words } from "../ui";
import type { ScreenProps } from "../ui";

export function Users({ client, can }: ScreenProps) {
  const load = useCallback(async () => (await client.call(routes.listUsers, { pageSize: 200 })).users, [client]);
  const { data: users, error, reload } = useLoad(load);
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [roles, setRoles] = useState("viewer");
  const [editing, setEditing] = useState<{ userId: string; roles: string } | null>(null);
  const [result, setResult] = useState("");

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
              <td>{u.mfaEnrolled ? "enrolled" : "none"}</td>
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
