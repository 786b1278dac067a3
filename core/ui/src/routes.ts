// The REST routes the console calls, each with its contract's message schemas.
import {
  ConfirmMfaRequestSchema,
  ConfirmMfaResponseSchema,
  EnrollMfaRequestSchema,
  EnrollMfaResponseSchema,
  LoginRequestSchema,
  LoginResponseSchema,
  LogoutRequestSchema,
  LogoutResponseSchema,
  VerifyMfaRequestSchema,
  VerifyMfaResponseSchema,
  WhoAmIRequestSchema,
  WhoAmIResponseSchema,
} from "@gen/vivified/identity/v1/auth_pb.js";
import {
  ApprovePluginRequestSchema,
  ApprovePluginResponseSchema,
  DisablePluginRequestSchema,
  DisablePluginResponseSchema,
  EnablePluginRequestSchema,
  EnablePluginResponseSchema,
  ListPluginsRequestSchema,
  ListPluginsResponseSchema,
  RevokePluginRequestSchema,
  RevokePluginResponseSchema,
} from "@gen/vivified/admin/v1/plugin_admin_pb.js";
import {
  CreateUserRequestSchema,
  CreateUserResponseSchema,
  DisableUserRequestSchema,
  DisableUserResponseSchema,
  ListUsersRequestSchema,
  ListUsersResponseSchema,
  ResetUserMfaRequestSchema,
  ResetUserMfaResponseSchema,
  UpdateUserRequestSchema,
  UpdateUserResponseSchema,
} from "@gen/vivified/identity/v1/user_admin_pb.js";
import {
  CreateApiKeyRequestSchema,
  CreateApiKeyResponseSchema,
  ListApiKeysRequestSchema,
  ListApiKeysResponseSchema,
  RevokeApiKeyRequestSchema,
  RevokeApiKeyResponseSchema,
} from "@gen/vivified/identity/v1/api_keys_pb.js";
import {
  ListAuditRecordsRequestSchema,
  ListAuditRecordsResponseSchema,
  VerifyAuditLogRequestSchema,
  VerifyAuditLogResponseSchema,
  WatchAuditRecordsRequestSchema,
  WatchAuditRecordsResponseSchema,
} from "@gen/vivified/admin/v1/audit_query_pb.js";
import {
  ClearCoreSettingRequestSchema,
  ClearCoreSettingResponseSchema,
  GetPluginConfigRequestSchema,
  GetPluginConfigResponseSchema,
  ListCoreSettingHistoryRequestSchema,
  ListCoreSettingHistoryResponseSchema,
  ListCoreSettingsRequestSchema,
  ListCoreSettingsResponseSchema,
  ListPluginConfigHistoryRequestSchema,
  ListPluginConfigHistoryResponseSchema,
  SetCoreSettingRequestSchema,
  SetCoreSettingResponseSchema,
  SetPluginConfigValueRequestSchema,
  SetPluginConfigValueResponseSchema,
} from "@gen/vivified/config/v1/config_pb.js";
import {
  ListDeadLettersRequestSchema,
  ListDeadLettersResponseSchema,
  ListSubscriptionsRequestSchema,
  ListSubscriptionsResponseSchema,
  ReplayDeadLettersRequestSchema,
  ReplayDeadLettersResponseSchema,
} from "@gen/vivified/admin/v1/event_admin_pb.js";
import { createRegistry } from "@bufbuild/protobuf";
import type { DescMessage, Registry } from "@bufbuild/protobuf";
import { file_vivified_events_v1_canonical } from "@gen/vivified/events/v1/canonical_pb.js";
import type { Route, Verb } from "./api";

const AUTH = "/vivified.identity.v1.AuthService/";
const PLUGINS = "/vivified.admin.v1.PluginAdminService/";
const USERS = "/vivified.identity.v1.UserAdminService/";
const KEYS = "/vivified.identity.v1.ApiKeyService/";
const AUDIT = "/vivified.admin.v1.AuditQueryService/";
const CONFIG = "/vivified.config.v1.ConfigService/";
const EVENTS = "/vivified.admin.v1.EventAdminService/";

function route<I extends DescMessage, O extends DescMessage>(
  verb: Verb, path: string, input: I, output: O, method: string, registry?: Registry,
): Route<I, O> & { method: string } {
  return { verb, path, input, output, method, registry };
}

/** The canonical event types: a dead letter's event payload is a google.protobuf.Any of one of them. */
const EVENT_TYPES = createRegistry(file_vivified_events_v1_canonical);

/** Each route's gRPC method is what WhoAmI's allowed_methods names. */
export const routes = {
  login: route("POST", "/v1/auth:login", LoginRequestSchema, LoginResponseSchema,
    AUTH + "Login"),
  verifyMfa: route("POST", "/v1/auth:verifyMfa", VerifyMfaRequestSchema, VerifyMfaResponseSchema,
    AUTH + "VerifyMfa"),
  enrollMfa: route("POST", "/v1/auth:enrollMfa", EnrollMfaRequestSchema, EnrollMfaResponseSchema,
    AUTH + "EnrollMfa"),
  confirmMfa: route("POST", "/v1/auth:confirmMfa", ConfirmMfaRequestSchema, ConfirmMfaResponseSchema,
    AUTH + "ConfirmMfa"),
  logout: route("POST", "/v1/auth:logout", LogoutRequestSchema, LogoutResponseSchema,
    AUTH + "Logout"),
  whoAmI: route("GET", "/v1/auth:whoAmI", WhoAmIRequestSchema, WhoAmIResponseSchema,
    AUTH + "WhoAmI"),
  listPlugins: route("GET", "/v1/plugins", ListPluginsRequestSchema, ListPluginsResponseSchema,
    PLUGINS + "ListPlugins"),
  approvePlugin: route("POST", "/v1/plugins:approve", ApprovePluginRequestSchema, ApprovePluginResponseSchema,
    PLUGINS + "ApprovePlugin"),
  disablePlugin: route("POST", "/v1/plugins/{plugin_id}:disable", DisablePluginRequestSchema, DisablePluginResponseSchema,
    PLUGINS + "DisablePlugin"),
  enablePlugin: route("POST", "/v1/plugins/{plugin_id}:enable", EnablePluginRequestSchema, EnablePluginResponseSchema,
    PLUGINS + "EnablePlugin"),
  /** A server stream (newline-delimited JSON): read with Client.open and feed.ts. */
  watchAuditRecords: route("GET", "/v1/audit/records:watch", WatchAuditRecordsRequestSchema,
    WatchAuditRecordsResponseSchema, AUDIT + "WatchAuditRecords"),
  revokePlugin: route("POST", "/v1/plugins/{plugin_id}:revoke", RevokePluginRequestSchema, RevokePluginResponseSchema,
    PLUGINS + "RevokePlugin"),
  listUsers: route("GET", "/v1/users", ListUsersRequestSchema, ListUsersResponseSchema,
    USERS + "ListUsers"),
  createUser: route("POST", "/v1/users", CreateUserRequestSchema, CreateUserResponseSchema,
    USERS + "CreateUser"),
  updateUser: route("PATCH", "/v1/users/{user_id}", UpdateUserRequestSchema, UpdateUserResponseSchema,
    USERS + "UpdateUser"),
  disableUser: route("POST", "/v1/users/{user_id}:disable", DisableUserRequestSchema, DisableUserResponseSchema,
    USERS + "DisableUser"),
  resetUserMfa: route("POST", "/v1/users/{user_id}:resetMfa", ResetUserMfaRequestSchema, ResetUserMfaResponseSchema,
    USERS + "ResetUserMfa"),
  listApiKeys: route("GET", "/v1/apiKeys", ListApiKeysRequestSchema, ListApiKeysResponseSchema,
    KEYS + "ListApiKeys"),
  createApiKey: route("POST", "/v1/apiKeys", CreateApiKeyRequestSchema, CreateApiKeyResponseSchema,
    KEYS + "CreateApiKey"),
  revokeApiKey: route("POST", "/v1/apiKeys/{key_id}:revoke", RevokeApiKeyRequestSchema, RevokeApiKeyResponseSchema,
    KEYS + "RevokeApiKey"),
  listAuditRecords: route("GET", "/v1/audit/records", ListAuditRecordsRequestSchema, ListAuditRecordsResponseSchema,
    AUDIT + "ListAuditRecords"),
  verifyAuditLog: route("GET", "/v1/audit:verify", VerifyAuditLogRequestSchema, VerifyAuditLogResponseSchema,
    AUDIT + "VerifyAuditLog"),
  getPluginConfig: route("GET", "/v1/plugins/{plugin_id}/config", GetPluginConfigRequestSchema, GetPluginConfigResponseSchema,
    CONFIG + "GetPluginConfig"),
  setPluginConfigValue: route("POST", "/v1/plugins/{plugin_id}/config:set", SetPluginConfigValueRequestSchema, SetPluginConfigValueResponseSchema,
    CONFIG + "SetPluginConfigValue"),
  listPluginConfigHistory: route("GET", "/v1/plugins/{plugin_id}/config:history", ListPluginConfigHistoryRequestSchema, ListPluginConfigHistoryResponseSchema,
    CONFIG + "ListPluginConfigHistory"),
  listCoreSettings: route("GET", "/v1/coreSettings", ListCoreSettingsRequestSchema, ListCoreSettingsResponseSchema,
    CONFIG + "ListCoreSettings"),
  setCoreSetting: route("PUT", "/v1/coreSettings/{key}", SetCoreSettingRequestSchema, SetCoreSettingResponseSchema,
    CONFIG + "SetCoreSetting"),
  clearCoreSetting: route("POST", "/v1/coreSettings/{key}:clear", ClearCoreSettingRequestSchema, ClearCoreSettingResponseSchema,
    CONFIG + "ClearCoreSetting"),
  listCoreSettingHistory: route("GET", "/v1/coreSettings:history", ListCoreSettingHistoryRequestSchema, ListCoreSettingHistoryResponseSchema,
    CONFIG + "ListCoreSettingHistory"),
  listSubscriptions: route("GET", "/v1/subscriptions", ListSubscriptionsRequestSchema, ListSubscriptionsResponseSchema,
    EVENTS + "ListSubscriptions"),
  listDeadLetters: route("GET", "/v1/subscriptions/{subscription}/deadLetters", ListDeadLettersRequestSchema, ListDeadLettersResponseSchema,
    EVENTS + "ListDeadLetters", EVENT_TYPES),
  replayDeadLetters: route("POST", "/v1/subscriptions/{subscription}/deadLetters:replay", ReplayDeadLettersRequestSchema, ReplayDeadLettersResponseSchema,
    EVENTS + "ReplayDeadLetters"),
};
