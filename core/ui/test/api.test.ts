import { ApiError, Client } from "../src/api";
import { routes } from "../src/routes";
import { PluginStatus } from "@gen/vivified/admin/v1/plugin_admin_pb.js";

type Seen = { url: string; init: RequestInit };

function fake(status: number, body: unknown, seen: Seen[]) {
  return async (url: string, init: RequestInit) => {
    seen.push({ url, init });
    return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
  };
}

describe("Client", () => {
  it("sends the contract's JSON, path fields in the path only, and the bearer token", async () => {
    const seen: Seen[] = [];
    const client = new Client(fake(200, { plugin: { pluginId: "echo", status: "PLUGIN_STATUS_DISABLED" } }, seen));
    client.setToken("t0k");
    const reply = await client.call(routes.disablePlugin, { pluginId: "example-echo", reason: "maintenance" });
    expect(seen[0].url).toBe("/v1/plugins/example-echo:disable");
    expect(seen[0].init.method).toBe("POST");
    expect(JSON.parse(String(seen[0].init.body))).toEqual({ reason: "maintenance" });
    expect((seen[0].init.headers as Record<string, string>).Authorization).toBe("Bearer t0k");
    expect(seen[0].init.credentials).toBe("omit");
    expect(reply.plugin?.status).toBe(PluginStatus.DISABLED);
  });

  it("GET has no body and no token before sign-in", async () => {
    const seen: Seen[] = [];
    await new Client(fake(200, {}, seen)).call(routes.listPlugins, {});
    expect(seen[0].init.body).toBeUndefined();
    expect((seen[0].init.headers as Record<string, string>).Authorization).toBeUndefined();
  });

  it("turns a refusal into an ApiError with the status, ErrorInfo reason and rule id", async () => {
    const body = {
      code: 7, message: "rule user-plugin-admin requires trait(s) plugin_manager",
      details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "POLICY_DENIED", metadata: { rule_id: "user-plugin-admin" } }],
    };
    const error = await new Client(fake(403, body, [])).call(routes.listPlugins, {}).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 403, reason: "POLICY_DENIED", ruleId: "user-plugin-admin" });
  });

  it("never stores the token", async () => {
    const client = new Client(fake(200, {}, []));
    client.setToken("secret-token");
    expect(JSON.stringify(window.localStorage)).not.toContain("secret-token");
    expect(JSON.stringify(window.sessionStorage)).not.toContain("secret-token");
    expect(document.cookie).not.toContain("secret-token");
  });
});
