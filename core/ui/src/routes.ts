// The REST routes the console calls, each with its contract's message schemas.
import {
  DisablePluginRequestSchema,
  DisablePluginResponseSchema,
  EnablePluginRequestSchema,
  EnablePluginResponseSchema,
  ListPluginsRequestSchema,
  ListPluginsResponseSchema,
} from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import {
  WatchAuditRecordsRequestSchema,
  WatchAuditRecordsResponseSchema,
} from "@gen/vivified/admin/v1/audit_query_pb.js";
import {
  LoginRequestSchema,
  LoginResponseSchema,
  LogoutRequestSchema,
  LogoutResponseSchema,
  VerifyMfaRequestSchema,
  VerifyMfaResponseSchema,
  WhoAmIRequestSchema,
  WhoAmIResponseSchema,
} from "@gen/vivified/identity/v1/auth_pb.js";
import type { DescMessage } from "@bufbuild/protobuf";
import type { Route } from "./api";

const AUTH = "/vivified.identity.v1.AuthService/";
const PLUGINS = "/vivified.admin.v1.PluginAdminService/";
const AUDIT = "/vivified.admin.v1.AuditQueryService/";

function route<I extends DescMessage, O extends DescMessage>(
  verb: "GET" | "POST", path: string, input: I, output: O, method: string,
): Route<I, O> & { method: string } {
  return { verb, path, input, output, method };
}

/** Each route's gRPC method is what WhoAmI's allowed_methods names. */
export const routes = {
  login: route("POST", "/v1/auth:login", LoginRequestSchema, LoginResponseSchema, AUTH + "Login"),
  verifyMfa: route("POST", "/v1/auth:verifyMfa", VerifyMfaRequestSchema, VerifyMfaResponseSchema, AUTH + "VerifyMfa"),
  logout: route("POST", "/v1/auth:logout", LogoutRequestSchema, LogoutResponseSchema, AUTH + "Logout"),
  whoAmI: route("GET", "/v1/auth:whoAmI", WhoAmIRequestSchema, WhoAmIResponseSchema, AUTH + "WhoAmI"),
  listPlugins: route("GET", "/v1/plugins", ListPluginsRequestSchema, ListPluginsResponseSchema, PLUGINS + "ListPlugins"),
  disablePlugin: route("POST", "/v1/plugins/{plugin_id}:disable", DisablePluginRequestSchema, DisablePluginResponseSchema,
    PLUGINS + "DisablePlugin"),
  enablePlugin: route("POST", "/v1/plugins/{plugin_id}:enable", EnablePluginRequestSchema, EnablePluginResponseSchema,
    PLUGINS + "EnablePlugin"),
  /** A server stream (newline-delimited JSON): read with Client.open and feed.ts. */
  watchAuditRecords: route("GET", "/v1/audit/records:watch", WatchAuditRecordsRequestSchema,
    WatchAuditRecordsResponseSchema, AUDIT + "WatchAuditRecords"),
};
