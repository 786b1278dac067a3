// Small pieces every screen shares: error text, focus on a newly shown form, enum names.
import { useCallback, useEffect, useRef, useState } from "react";
import type { WhoAmIResponse } from "@gen/vivified/identity/v1/auth_pb.js";
import { PluginHealth, PluginStatus } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import type { Plugin } from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { ApiError } from "./api";
import type { Client } from "./api";
import type { Permissions } from "./permissions";
import { routes } from "./routes";

/** What every screen is given: the signed-in client, who is signed in and what they may call. */
export interface ScreenProps {
  client: Client;
  me: WhoAmIResponse;
  can: Permissions;
  answeredMs: number | null;
}

/** Moves keyboard focus to the element once it is shown (a new step or form). */
export function useFocus<T extends HTMLElement>(when: unknown) {
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

export function when(t: Timestamp | undefined): string {
  if (!t) return "";
  return new Date(Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6)).toISOString().replace(".000Z", "Z");
}

/** Loads once and on reload(); an error is kept as text for a role=alert paragraph. */
export function useLoad<T>(load: () => Promise<T>, enabled = true) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState("");
  const reload = useCallback(async () => {
    if (!enabled) return;
    try {
      setData(await load());
      setError("");
    } catch (err) {
      setError(describeError(err));
    }
  }, [load, enabled]);
  useEffect(() => { void reload(); }, [reload]);
  return { data, error, reload };
}

export function usePlugins(client: Client, allowed: boolean) {
  const load = useCallback(async (): Promise<Plugin[]> => (await client.call(routes.listPlugins, {})).plugins, [client]);
  const { data, error, reload } = useLoad(load, allowed);
  return { plugins: data, error, reload };
}

/** Splits "a, b c" into ["a", "b", "c"]. */
export const words = (text: string): string[] => text.split(/[\s,]+/).filter(Boolean);
