// The pieces of the new screens that need no server: manifest reading and
// which nav entries a user's allowed methods show.
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { visibleScreens } from "../src/App";
import { Client } from "../src/api";
import { routes } from "../src/routes";
import { Permissions } from "../src/permissions";
import { parseManifest } from "../src/screens/Plugins";
import { NAV } from "../src/screens/nav";
import { verifySummary } from "../src/screens/Audit";
import { create } from "@bufbuild/protobuf";
import { VerifyAuditLogResponseSchema } from "@gen/vivified/admin/v1/audit_query_pb.js";

describe("parseManifest", () => {
  it("reads the echo plugin's YAML manifest through the contract's schema", async () => {
    const text = readFileSync(resolve(process.cwd(), "../../plugins/example_echo/manifest.yaml"), "utf8");
    const manifest = await parseManifest(text);
    expect(manifest.id).toBe("example-echo");
    expect(manifest.traits).toEqual(["communication_plugin"]);
  });

  it("refuses a key the contract does not have, and a manifest that is not a mapping", async () => {
    await expect(parseManifest("id: x\nbogus_key: 1\n")).rejects.toThrow(/bogus_key/);
    await expect(parseManifest("- a\n- b\n")).rejects.toThrow(/not a mapping/);
  });
});

describe("visibleScreens", () => {
  it("shows the dashboard to everyone and each other screen only with its method", () => {
    expect(visibleScreens(new Permissions([])).map((e) => e.id)).toEqual(["dashboard"]);
    const all = NAV.flatMap((e) => (e.needs ? [e.needs.method] : []));
    expect(visibleScreens(new Permissions(all)).map((e) => e.id)).toEqual(NAV.map((e) => e.id));
    const users = visibleScreens(new Permissions(["/vivified.identity.v1.UserAdminService/ListUsers"]));
    expect(users.map((e) => e.id)).toEqual(["dashboard", "users"]);
  });
});

describe("dead letters", () => {
  it("decode with the event payload, a google.protobuf.Any of a canonical event type", async () => {
    const body = {
      deadLetters: [{
        deadLetterId: "dl_1", reason: "3 attempts", attempts: 3,
        event: {
          eventId: "poison", eventType: "vivified.events.v1.MessageSendRequested",
          payload: { "@type": "type.googleapis.com/vivified.events.v1.MessageSendRequested", messageId: "poison" },
        },
      }],
    };
    const client = new Client(async () => new Response(JSON.stringify(body), { status: 200 }));
    const reply = await client.call(routes.listDeadLetters, { subscription: "dlq-sub/sender" });
    expect(reply.deadLetters[0].event?.payload?.typeUrl).toBe("type.googleapis.com/vivified.events.v1.MessageSendRequested");
  });
});

describe("verifySummary", () => {
  it("names the first bad record's seq and the problem when the chain is broken", () => {
    const broken = create(VerifyAuditLogResponseSchema, { intact: false, recordCount: 41n, firstBadSeq: 42n, problem: "record hash mismatch" });
    expect(verifySummary(broken)).toBe("Broken: first bad record is seq 42 (record hash mismatch); 41 records checked.");
    const intact = create(VerifyAuditLogResponseSchema, { intact: true, recordCount: 7n });
    expect(verifySummary(intact)).toBe("Intact: 7 records verified.");
  });
});
