import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { useLocation, useNavigate } from "react-router-dom";
import { access, Code, errorCode, errorMessage, onUnauthenticated } from "./api";
import { ActorKind, Role } from "@legato/client/gen/legato/v1/access_pb";

export type RoleName = "viewer" | "operator" | "editor" | "admin";

const ROLE_RANK: Record<RoleName, number> = { viewer: 1, operator: 2, editor: 3, admin: 4 };

export interface Caller {
  name: string;
  role: RoleName;
  kind: string;
  can(need: RoleName): boolean;
  signOut(): Promise<void>;
}

type AuthState =
  | { state: "loading" }
  | { state: "signed-in"; name: string; role: RoleName; kind: string }
  | { state: "signed-out"; /** Signed out by the user: the sign-in page opens without a `next`. */ byUser?: boolean }
  | { state: "error"; message: string };

interface AuthContextValue {
  auth: AuthState;
  caller: Caller;
  refresh(): Promise<void>;
}

export function roleName(role: Role): RoleName | undefined {
  switch (role) {
    case Role.VIEWER:
      return "viewer";
    case Role.OPERATOR:
      return "operator";
    case Role.EDITOR:
      return "editor";
    case Role.ADMIN:
      return "admin";
    default:
      return undefined;
  }
}

export function actorKindName(kind: ActorKind): string {
  switch (kind) {
    case ActorKind.TOKEN:
      return "token";
    case ActorKind.AGENT:
      return "agent";
    case ActorKind.SYSTEM:
      return "system";
    case ActorKind.LOCAL:
      return "local";
    case ActorKind.ANONYMOUS:
      return "anonymous";
    default:
      return "unknown";
  }
}

/** Whether `role` includes `need` (viewer < operator < editor < admin). */
export function roleAllows(role: RoleName | undefined, need: RoleName): boolean {
  return role !== undefined && ROLE_RANK[role] >= ROLE_RANK[need];
}

const AuthContext = createContext<AuthContextValue | undefined>(undefined);

/** POSTs /ui/signout; the server clears the session cookie. */
async function postSignOut(): Promise<void> {
  const res = await fetch("/ui/signout", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: "{}",
    credentials: "same-origin",
  });
  if (!res.ok && res.status !== 401) {
    throw new Error(`Sign-out failed: HTTP ${res.status}`);
  }
}

export function AuthProvider({ children }: { children: ReactNode }) {
  const [auth, setAuth] = useState<AuthState>({ state: "loading" });
  const navigate = useNavigate();
  const location = useLocation();

  const refresh = useCallback(async () => {
    try {
      const res = await access.getCaller({});
      const role = roleName(res.role) ?? (res.kind === ActorKind.ANONYMOUS ? "admin" : "viewer");
      setAuth({ state: "signed-in", name: res.name || actorKindName(res.kind), role, kind: actorKindName(res.kind) });
    } catch (e) {
      if (errorCode(e) === Code.Unauthenticated) {
        setAuth({ state: "signed-out" });
      } else {
        setAuth({ state: "error", message: errorMessage(e) });
      }
    }
  }, []);

  useEffect(() => {
    void refresh();
  }, [refresh]);

  useEffect(
    () =>
      onUnauthenticated(() => {
        setAuth((prev) => (prev.state === "signed-out" ? prev : { state: "signed-out" }));
      }),
    [],
  );

  const onSignInPage = location.pathname === "/signin";
  useEffect(() => {
    if (auth.state === "signed-out" && !onSignInPage) {
      const next = location.pathname + location.search;
      const query = !auth.byUser && next && next !== "/" ? `?next=${encodeURIComponent(next)}` : "";
      navigate(`/signin${query}`, { replace: true });
    }
  }, [auth, onSignInPage, location.pathname, location.search, navigate]);

  const signOut = useCallback(async () => {
    await postSignOut();
    setAuth({ state: "signed-out", byUser: true });
  }, []);

  const caller = useMemo<Caller>(() => {
    const signedIn = auth.state === "signed-in";
    const role: RoleName = signedIn ? auth.role : "viewer";
    return {
      name: signedIn ? auth.name : "",
      role,
      kind: signedIn ? auth.kind : "",
      can: (need: RoleName) => signedIn && roleAllows(role, need),
      signOut,
    };
  }, [auth, signOut]);

  const value = useMemo<AuthContextValue>(() => ({ auth, caller, refresh }), [auth, caller, refresh]);
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>;
}

function useAuthContext(): AuthContextValue {
  const ctx = useContext(AuthContext);
  if (!ctx) {
    throw new Error("useCaller must be used inside <AuthProvider>");
  }
  return ctx;
}

/** The signed-in caller: name, role, kind, can(role) and signOut(). */
export function useCaller(): Caller {
  return useAuthContext().caller;
}

/** The sign-in state and a way to read it again (after signing in). */
export function useAuth(): { auth: AuthState; refresh(): Promise<void> } {
  const { auth, refresh } = useAuthContext();
  return { auth, refresh };
}
