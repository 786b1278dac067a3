// The console's REST paths are the google.api.http routes of proto/: a changed
// route in the contract fails here before it fails in a browser.
import { readFileSync } from "node:fs";
import { routes } from "../src/routes";

const PROTO: Record<string, string> = {
  "vivified.identity.v1.AuthService": "../../../proto/vivified/identity/v1/auth.proto",
  "vivified.admin.v1.PluginAdminService": "../../../proto/vivified/admin/v1/plugin_admin.proto",
  "vivified.admin.v1.AuditQueryService": "../../../proto/vivified/admin/v1/audit_query.proto",
  "vivified.admin.v1.EventAdminService": "../../../proto/vivified/admin/v1/event_admin.proto",
  "vivified.identity.v1.UserAdminService": "../../../proto/vivified/identity/v1/user_admin.proto",
  "vivified.identity.v1.ApiKeyService": "../../../proto/vivified/identity/v1/api_keys.proto",
  "vivified.config.v1.ConfigService": "../../../proto/vivified/config/v1/config.proto",
};

function httpRule(service: string, method: string): [string, string] {
  const text = readFileSync(new URL(PROTO[service], import.meta.url), "utf8");
  const start = text.indexOf(`rpc ${method}(`);
  expect(start).toBeGreaterThan(-1);
  const rule = /(get|post|put|patch|delete):\s*"([^"]+)"/.exec(text.slice(start, text.indexOf("}\n", start) + 200));
  expect(rule).not.toBeNull();
  return [rule![1].toUpperCase(), rule![2]];
}

describe("routes", () => {
  for (const [name, route] of Object.entries(routes)) {
    it(`${name} matches the proto's google.api.http rule`, () => {
      const [, service, method] = route.method.split("/");
      expect(httpRule(service, method)).toEqual([route.verb, route.path]);
      expect(route.input.typeName).toBe(`${service.split(".").slice(0, -1).join(".")}.${method}Request`);
    });
  }
});
