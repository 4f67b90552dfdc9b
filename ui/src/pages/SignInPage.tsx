import { useState, type FormEvent } from "react";
import { useNavigate, useSearchParams } from "react-router-dom";
import { errorMessage } from "../api";
import { useAuth } from "../auth";

/** A path inside the UI to go to after signing in; anything else falls back to the pipelines. */
export function safeNext(next: string | null): string {
  if (!next || !next.startsWith("/") || next.startsWith("//") || next.startsWith("/signin")) {
    return "/pipelines";
  }
  return next;
}

async function postSession(token: string): Promise<void> {
  const res = await fetch("/ui/session", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
    credentials: "same-origin",
  });
  if (res.ok) {
    return;
  }
  let message = `Sign-in failed: HTTP ${res.status} ${res.statusText}`.trim();
  try {
    const body: unknown = await res.json();
    if (typeof body === "object" && body !== null && "error" in body && typeof body.error === "string" && body.error) {
      message = body.error;
    }
  } catch {
    // Not JSON: keep the HTTP status as the message.
  }
  throw new Error(message);
}

export function SignInPage() {
  const [params] = useSearchParams();
  const navigate = useNavigate();
  const { auth, refresh } = useAuth();
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const linkError = params.get("error") ?? "";
  const next = safeNext(params.get("next"));

  const onSubmit = async (ev: FormEvent) => {
    ev.preventDefault();
    const value = token.trim();
    if (!value) {
      setError("Paste an API token (lgt_…) to sign in.");
      return;
    }
    setBusy(true);
    setError("");
    try {
      await postSession(value);
      await refresh();
      navigate(next, { replace: true });
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };

  const shownError = error || linkError;
  return (
    <div className="signin">
      <form className="signin-card" onSubmit={onSubmit}>
        <div className="brand">
          <span className="brand-mark" aria-hidden="true">
            ♩
          </span>
          Legato
        </div>
        <h1 style={{ marginBottom: 6 }}>Sign in</h1>
        <p className="muted">Sign in to the control plane with an API token.</p>
        {auth.state === "signed-in" && (
          <div className="info-box">
            You are signed in as <strong>{auth.name}</strong> ({auth.role}).{" "}
            <a
              href={next}
              onClick={(ev) => {
                ev.preventDefault();
                navigate(next);
              }}
            >
              Continue
            </a>
          </div>
        )}
        {shownError && (
          <div className="error-box" role="alert" data-testid="signin-error">
            {shownError}
          </div>
        )}
        <div className="field">
          <label htmlFor="token">API token</label>
          <input
            id="token"
            className="input"
            type="password"
            autoComplete="off"
            spellCheck={false}
            placeholder="lgt_…"
            value={token}
            onChange={(ev) => setToken(ev.target.value)}
            data-testid="token-input"
            autoFocus
          />
        </div>
        <button type="submit" className="btn btn-primary" disabled={busy} data-testid="signin-submit">
          {busy ? "Signing in…" : "Sign in"}
        </button>
        <div className="signin-help">
          <p>
            <strong>No token at hand?</strong> On a machine where the CLI is signed in, run
          </p>
          <pre>legato ui</pre>
          <p style={{ marginTop: 8 }}>
            It prints a one-time sign-in link for this control plane: open it in this browser within a few minutes. Each
            link works once and signs you in with the CLI's identity and role.
          </p>
        </div>
      </form>
    </div>
  );
}
