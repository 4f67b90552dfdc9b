import { lazy, Suspense, useState } from "react";
import { Navigate, NavLink, Outlet, Route, Routes } from "react-router-dom";
import { errorMessage } from "./api";
import { AuthProvider, useAuth, useCaller } from "./auth";
import ActivityPage from "./pages/ActivityPage";
import AgentsPage from "./pages/AgentsPage";
import NotificationsPage from "./pages/NotificationsPage";
import { PipelineDiffPage } from "./pages/PipelineDiffPage";
import { PipelinePage } from "./pages/PipelinePage";
import { PipelinesPage } from "./pages/PipelinesPage";
import RunPage from "./pages/RunPage";
import RunsPage from "./pages/RunsPage";
import { SignInPage } from "./pages/SignInPage";

// The editor brings CodeMirror: loaded when first opened, not with every page.
const PipelineEditorPage = lazy(() =>
  import("./pages/PipelineEditorPage").then((m) => ({ default: m.PipelineEditorPage })),
);

function NavItem({ to, testId, label, icon }: { to: string; testId: string; label: string; icon: string }) {
  return (
    <NavLink to={to} data-testid={testId} className={({ isActive }) => (isActive ? "nav-link active" : "nav-link")}>
      <span className="nav-icon" aria-hidden="true">
        {icon}
      </span>
      {label}
    </NavLink>
  );
}

function Sidebar() {
  const caller = useCaller();
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const onSignOut = async () => {
    setBusy(true);
    setError("");
    try {
      await caller.signOut();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(false);
    }
  };
  return (
    <nav className="sidebar">
      <div className="brand">
        <span className="brand-mark" aria-hidden="true">
          ♩
        </span>
        Legato
      </div>
      <div className="nav">
        <NavItem to="/pipelines" testId="nav-pipelines" label="Pipelines" icon="▦" />
        <NavItem to="/runs" testId="nav-runs" label="Runs" icon="▶" />
        <NavItem to="/agents" testId="nav-agents" label="Agents" icon="◎" />
        <NavItem to="/activity" testId="nav-activity" label="Activity" icon="≡" />
        <NavItem to="/notifications" testId="nav-notifications" label="Notifications" icon="✉" />
      </div>
      <div className="sidebar-footer">
        <div className="caller" data-testid="caller">
          <div className="caller-name" title={caller.name}>
            {caller.name}
          </div>
          <div className="caller-role">
            {caller.role}
            {caller.kind === "anonymous" ? " · no auth" : ""}
          </div>
        </div>
        {caller.kind !== "anonymous" && (
          <button type="button" className="btn btn-small" data-testid="signout" onClick={onSignOut} disabled={busy}>
            Sign out
          </button>
        )}
        {error && (
          <div className="error-text" role="alert">
            {error}
          </div>
        )}
      </div>
    </nav>
  );
}

function Layout() {
  const { auth, refresh } = useAuth();
  if (auth.state === "loading") {
    return <div className="boot muted">Loading…</div>;
  }
  if (auth.state === "error") {
    return (
      <div className="boot">
        <div className="error-box" role="alert">
          <strong>Cannot reach the control plane.</strong> {auth.message}
        </div>
        <button type="button" className="btn" onClick={() => void refresh()}>
          Try again
        </button>
      </div>
    );
  }
  if (auth.state === "signed-out") {
    return null;
  }
  return (
    <div className="shell">
      <Sidebar />
      <main className="main">
        <Suspense fallback={<div className="page muted">Loading…</div>}>
          <Outlet />
        </Suspense>
      </main>
    </div>
  );
}

export function App() {
  return (
    <AuthProvider>
      <Routes>
        <Route path="/signin" element={<SignInPage />} />
        <Route element={<Layout />}>
          <Route index element={<Navigate to="/pipelines" replace />} />
          <Route path="/pipelines" element={<PipelinesPage />} />
          <Route path="/pipelines/new" element={<PipelineEditorPage />} />
          <Route path="/pipelines/:name" element={<PipelinePage />} />
          <Route path="/pipelines/:name/edit" element={<PipelineEditorPage />} />
          <Route path="/pipelines/:name/diff" element={<PipelineDiffPage />} />
          <Route path="/runs" element={<RunsPage />} />
          <Route path="/runs/:id" element={<RunPage />} />
          <Route path="/agents" element={<AgentsPage />} />
          <Route path="/activity" element={<ActivityPage />} />
          <Route path="/notifications" element={<NotificationsPage />} />
          <Route path="*" element={<NotFound />} />
        </Route>
      </Routes>
    </AuthProvider>
  );
}

function NotFound() {
  return (
    <div className="page">
      <h1>Not found</h1>
      <p className="muted">
        There is no page here. <NavLink to="/pipelines">Go to the pipelines.</NavLink>
      </p>
    </div>
  );
}
