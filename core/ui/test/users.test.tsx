// The users screen's MFA reset: offered only for an enrolled user and only when
// WhoAmI allows ResetUserMfa; it asks for a reason and sends it with the user id
// in the path, as the contract's google.api.http rule says.
import { act } from "react";
import { createRoot } from "react-dom/client";
import { create } from "@bufbuild/protobuf";
import { WhoAmIResponseSchema } from "@gen/vivified/identity/v1/auth_pb.js";
import { Client } from "../src/api";
import { Permissions } from "../src/permissions";
import { Users } from "../src/screens/Users";

(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = true;

const USERS = "/vivified.identity.v1.UserAdminService/";
const LISTED = {
  users: [
    { userId: "usr_pia", username: "pia", roles: ["phi_handler"], mfaEnrolled: true },
    { userId: "usr_vic", username: "vic", roles: ["viewer"] },
  ],
};

type Seen = { url: string; init: RequestInit };

async function render(allowed: string[], seen: Seen[], refuse = false) {
  const client = new Client(async (url: string, init: RequestInit) => {
    seen.push({ url, init });
    if (refuse && url.endsWith(":resetMfa")) {
      const body = { code: 7, message: "denied", details: [{ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "POLICY_DENIED", metadata: { rule_id: "user-admin" } }] };
      return new Response(JSON.stringify(body), { status: 403 });
    }
    const body = url.startsWith("/v1/users?") ? LISTED : { user: { userId: "usr_pia", username: "pia" } };
    return new Response(JSON.stringify(body), { status: 200 });
  });
  const host = document.createElement("div");
  document.body.replaceChildren(host);
  const root = createRoot(host);
  const me = create(WhoAmIResponseSchema, { userId: "usr_ann", username: "ann" });
  await act(async () => root.render(<Users client={client} me={me} can={new Permissions(allowed)} answeredMs={null} />));
  await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
  return { root, host };
}

const button = (host: HTMLElement, text: string) =>
  [...host.querySelectorAll("button")].find((b) => b.textContent === text);

async function typeReason(host: HTMLElement, value: string) {
  const input = host.querySelector<HTMLInputElement>("#reset-reason")!;
  await act(async () => {
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, "value")!.set!.call(input, value);
    input.dispatchEvent(new Event("input", { bubbles: true }));
  });
}

describe("Users: reset MFA", () => {
  it("is offered for an enrolled user only, asks for a reason, and posts it to the contract's route", async () => {
    const seen: Seen[] = [];
    const { root, host } = await render([`${USERS}ListUsers`, `${USERS}ResetUserMfa`], seen);
    expect(button(host, "Reset MFA of pia")).toBeDefined();
    expect(button(host, "Reset MFA of vic")).toBeUndefined();
    await act(async () => button(host, "Reset MFA of pia")!.click());
    expect(host.querySelector("#reset-mfa-title")?.textContent).toBe("Reset MFA of pia");
    expect(document.activeElement?.id).toBe("reset-reason");
    await typeReason(host, "lost phone; called back");
    await act(async () => host.querySelector<HTMLFormElement>("form[aria-labelledby='reset-mfa-title']")!.requestSubmit());
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    const reset = seen.find((s) => s.url.endsWith(":resetMfa"))!;
    expect(reset.url).toBe("/v1/users/usr_pia:resetMfa");
    expect(reset.init.method).toBe("POST");
    expect(JSON.parse(String(reset.init.body))).toEqual({ reason: "lost phone; called back" });
    expect(host.querySelector("[data-testid='users-result']")?.textContent).toBe("pia's MFA is reset and their sessions ended.");
    expect(host.querySelector("#reset-mfa-title")).toBeNull();
    root.unmount();
  });

  it("is hidden when WhoAmI does not allow ResetUserMfa", async () => {
    const { root, host } = await render([`${USERS}ListUsers`], []);
    expect(host.querySelector("tr[data-user='pia']")).not.toBeNull();
    expect([...host.querySelectorAll("button")].some((b) => (b.textContent ?? "").startsWith("Reset MFA"))).toBe(false);
    root.unmount();
  });

  it("a refusal shows the server's reason and keeps the form with the reason typed", async () => {
    const { root, host } = await render([`${USERS}ListUsers`, `${USERS}ResetUserMfa`], [], true);
    await act(async () => button(host, "Reset MFA of pia")!.click());
    await typeReason(host, "lost phone");
    await act(async () => host.querySelector<HTMLFormElement>("form[aria-labelledby='reset-mfa-title']")!.requestSubmit());
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(host.querySelector("[data-testid='users-result']")?.textContent).toContain("POLICY_DENIED");
    expect(host.querySelector<HTMLInputElement>("#reset-reason")?.value).toBe("lost phone");
    root.unmount();
  });
});
