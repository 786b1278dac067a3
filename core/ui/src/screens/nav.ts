// The console's screens, in nav order: one line each. A screen is shown only
// when WhoAmI allows the method its `needs` route calls (the server refuses
// the rest anyway). Add a screen by adding its module and one line here.
import type { ComponentType } from "react";
import { routes } from "../routes";
import type { ScreenProps } from "../ui";
import { ApiKeys } from "./ApiKeys";
import { Audit } from "./Audit";
import { Config } from "./Config";
import { Dashboard } from "./Dashboard";
import { Events } from "./Events";
import { Live } from "./Live";
import { Plugins } from "./Plugins";
import { Users } from "./Users";

export interface NavEntry {
  id: string;
  label: string;
  /** The route whose method the user must be allowed; null: every signed-in user. */
  needs: { method: string } | null;
  screen: ComponentType<ScreenProps>;
}

export const NAV: NavEntry[] = [
  { id: "dashboard", label: "Dashboard", needs: null, screen: Dashboard },
  { id: "plugins", label: "Plugins", needs: routes.listPlugins, screen: Plugins },
  { id: "users", label: "Users", needs: routes.listUsers, screen: Users },
  { id: "api-keys", label: "API keys", needs: routes.createApiKey, screen: ApiKeys },
  { id: "audit", label: "Audit", needs: routes.listAuditRecords, screen: Audit },
  { id: "config", label: "Configuration", needs: routes.listCoreSettings, screen: Config },
  { id: "events", label: "Events", needs: routes.listSubscriptions, screen: Events },
  { id: "live", label: "Live activity", needs: routes.watchAuditRecords, screen: Live },
];
