// Sign-in: password, then either an authenticator code (VerifyMfa) or, for an
// account without one, TOTP enrolment (EnrollMfa shows the QR code and secret,
// ConfirmMfa checks the first code and returns the backup codes, shown once).
import { useState } from "react";
import type { FormEvent } from "react";
import { LoginStep } from "@gen/vivified/identity/v1/auth_pb.js";
import type { Client } from "./api";
import { QrCode } from "./qr";
import { routes } from "./routes";
import { describeError, useFocus } from "./ui";

type Step =
  | { kind: "password" }
  | { kind: "code"; mfaToken: string }
  | { kind: "enrol"; mfaToken: string; secret: string; uri: string }
  | { kind: "backup"; codes: string[]; token: string };

export function SignIn({ client, onSignedIn, notice }: {
  client: Client; onSignedIn: (token: string) => Promise<void>; notice: string;
}) {
  const [step, setStep] = useState<Step>({ kind: "password" });
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const codeRef = useFocus<HTMLInputElement>(step.kind === "code" || step.kind === "enrol" ? step.kind : "");
  const doneRef = useFocus<HTMLButtonElement>(step.kind === "backup");

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError("");
    try {
      if (step.kind === "code") {
        const verified = await client.call(routes.verifyMfa, { mfaToken: step.mfaToken, code });
        await onSignedIn(verified.tokens?.accessToken ?? "");
      } else if (step.kind === "enrol") {
        const confirmed = await client.call(routes.confirmMfa, { mfaToken: step.mfaToken, code });
        setCode("");
        setStep({ kind: "backup", codes: confirmed.backupCodes, token: confirmed.tokens?.accessToken ?? "" });
      } else if (step.kind === "backup") {
        await onSignedIn(step.token);
      } else {
        const reply = await client.call(routes.login, { username, password });
        setPassword("");
        if (reply.step === LoginStep.COMPLETE) await onSignedIn(reply.tokens?.accessToken ?? "");
        else if (reply.step === LoginStep.MFA_REQUIRED) setStep({ kind: "code", mfaToken: reply.mfaToken });
        else {
          const enrol = await client.call(routes.enrollMfa, { mfaToken: reply.mfaToken });
          setStep({ kind: "enrol", mfaToken: reply.mfaToken, secret: enrol.secret, uri: enrol.provisioningUri });
        }
      }
    } catch (err) {
      setError(describeError(err));
    } finally {
      setBusy(false);
    }
  };

  const button = { password: "Sign in", code: "Verify", enrol: "Confirm", backup: "Continue" }[step.kind];
  return (
    <main id="main" className="signin">
      <h1>Sign in to Vivified</h1>
      {notice && <p role="status">{notice}</p>}
      <form onSubmit={(e) => void submit(e)} aria-describedby={error ? "signin-error" : undefined}>
        {step.kind === "password" && (
          <>
            <label htmlFor="username">Username</label>
            <input id="username" name="username" autoComplete="username" required autoFocus
              value={username} onChange={(e) => setUsername(e.target.value)} />
            <label htmlFor="password">Password</label>
            <input id="password" name="password" type="password" autoComplete="current-password" required
              value={password} onChange={(e) => setPassword(e.target.value)} />
          </>
        )}
        {step.kind === "enrol" && (
          <>
            <h2>Set up an authenticator</h2>
            <p>This account has no authenticator yet. Scan the code with an authenticator app, or type the secret.</p>
            <QrCode text={step.uri} label="QR code of the authenticator secret" />
            <p>Secret: <code data-testid="mfa-secret">{step.secret}</code></p>
          </>
        )}
        {(step.kind === "code" || step.kind === "enrol") && (
          <>
            <label htmlFor="code">Authenticator code</label>
            <input id="code" ref={codeRef} name="code" inputMode="numeric" autoComplete="one-time-code" required
              value={code} onChange={(e) => setCode(e.target.value)} />
          </>
        )}
        {step.kind === "backup" && (
          <>
            <h2>Backup codes</h2>
            <p>Each signs in once without the authenticator. Keep them now: they are not shown again.</p>
            <ul data-testid="backup-codes" className="codes">{step.codes.map((c) => <li key={c}><code>{c}</code></li>)}</ul>
          </>
        )}
        <button type="submit" ref={doneRef} disabled={busy}>{button}</button>
      </form>
      {error && <p id="signin-error" role="alert" className="error">{error}</p>}
    </main>
  );
}
