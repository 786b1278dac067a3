// The console's screens over a fake REST origin: what WhoAmI allows decides
// what is shown (the server decides what is done).
import { act } from "react";
import { createRoot } from "react-dom/client";
import type { Root } from "react-dom/client";
import { App } from "../src/App";
import { Client } from "../src/api";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const PLUGINS = "/vivified.admin.v1.PluginAdminService/";

function origin(allowed: string[], seen: string[]) {
  const replies: Record<string, unknown> = {
    "/v1/auth:login": { step: "LOGIN_STEP_COMPLETE", tokens: { accessToken: "tok" } },
    "/v1/auth:whoAmI": { userId: "usr_1", username: "ann", roles: ["r"], traits: ["t"], allowedMethods: allowed },
    "/v1/plugins": { plugins: [{ pluginId: "example-echo", status: "PLUGIN_STATUS_ACTIVE", health: "PLUGIN_HEALTH_HEALTHY" }] },
  };
  return new Client(async (url: string) => {
    seen.push(url);
    return new Response(JSON.stringify(replies[url] ?? {}), { status: 200, headers: { "content-type": "application/json" } });
  });
}

async function signIn(client: Client): Promise<{ root: Root; host: HTMLElement }> {
  const host = document.createElement("div");
  document.body.replaceChildren(host);
  const root = createRoot(host);
  await act(async () => root.render(<App client={client} />));
  const set = (id: string, value: string) => {
    const input = host.querySelector<HTMLInputElement>(`#${id}`)!;
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value")!.set!.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  };
  await act(async () => {
    set("username", "ann");
    set("password", "pw");
  });
  await act(async () => {
    host.querySelector("form")!.requestSubmit();
  });
  await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
  return { root, host };
}

const buttons = (host: HTMLElement) => [...host.querySelectorAll("button")].map((b) => b.textContent ?? "");

describe("App", () => {
  it("a user allowed to list and disable plugins sees the plugins screen and its actions", async () => {
    const seen: string[] = [];
    const { root, host } = await signIn(origin([`${PLUGINS}ListPlugins`, `${PLUGINS}DisablePlugin`], seen));
    expect(host.textContent).toContain("Dashboard");
    expect(buttons(host)).toContain("Plugins");
    await act(async () => [...host.querySelectorAll("button")].find((b) => b.textContent === "Plugins")!.click());
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(buttons(host)).toContain("Disable example-echo");
    expect(seen).toContain("/v1/plugins");
    root.unmount();
  });

  it("a viewer sees no plugins screen, no admin action, and the console never asks for plugins", async () => {
    const seen: string[] = [];
    const { root, host } = await signIn(origin(["/vivified.identity.v1.AuthService/WhoAmI"], seen));
    expect(host.textContent).toContain("Dashboard");
    expect(buttons(host)).not.toContain("Plugins");
    expect(buttons(host).some((b) => b.startsWith("Disable") || b.startsWith("Enable"))).toBe(false);
    expect(seen).toEqual(["/v1/auth:login", "/v1/auth:whoAmI"]);
    root.unmount();
  });
});
