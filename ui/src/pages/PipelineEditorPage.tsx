import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useNavigate, useParams } from "react-router-dom";
import { errorMessage, newRequestId, pipelines } from "../api";
import { useCaller } from "../auth";
import { Dag } from "../components/Dag";
import { YamlEditor, type YamlEditorHandle } from "../components/YamlEditor";
import type { PipelineSpec } from "@legato/client/gen/legato/v1/spec_pb";
import type { LineProblem } from "./pipeline/editorLint";

export const NEW_PIPELINE_TEMPLATE = `name: new-pipeline
description: What this pipeline does.
params:
  rows:
    type: integer
    default: 10
    description: How many rows to make.
steps:
  - name: extract
    transform:
      code: |
        result = pd.DataFrame({"n": range(params["rows"])})
  - name: load
    needs: [extract]
    transform:
      code: |
        result = data
        print(f"{len(result)} rows")
`;

const VALIDATE_DELAY_MS = 300;
const NO_PROBLEMS: LineProblem[] = [];

interface Validation {
  /** The text this answer is about. */
  source: string;
  spec?: PipelineSpec;
  problems: LineProblem[];
}

/** Validates `text` with the server, 300 ms after it stops changing; answers older than the text are dropped. */
function useValidation(text: string | undefined) {
  const [result, setResult] = useState<Validation | undefined>(undefined);
  const [error, setError] = useState("");
  const [pending, setPending] = useState(false);
  const seq = useRef(0);

  useEffect(() => {
    if (text === undefined) return;
    const mine = ++seq.current;
    setPending(true);
    const timer = window.setTimeout(() => {
      pipelines
        .validatePipeline({ source: text, filename: "pipeline.yaml" })
        .then((res) => {
          if (mine !== seq.current) return;
          setResult({
            source: text,
            spec: res.spec,
            problems: res.problems.map((p) => ({ line: p.line, column: p.column, field: p.field, message: p.message })),
          });
          setError("");
        })
        .catch((e: unknown) => {
          if (mine !== seq.current) return;
          setError(errorMessage(e));
        })
        .finally(() => {
          if (mine === seq.current) setPending(false);
        });
    }, VALIDATE_DELAY_MS);
    return () => window.clearTimeout(timer);
  }, [text]);

  return { result, error, pending };
}

export function PipelineEditorPage() {
  const { name } = useParams<{ name: string }>();
  const editing = name !== undefined;
  const navigate = useNavigate();
  const caller = useCaller();
  const editor = useRef<YamlEditorHandle>(null);

  const [initial, setInitial] = useState<string | undefined>(editing ? undefined : NEW_PIPELINE_TEMPLATE);
  const [baseVersion, setBaseVersion] = useState(0);
  const [loadError, setLoadError] = useState("");
  const [text, setText] = useState<string | undefined>(editing ? undefined : NEW_PIPELINE_TEMPLATE);
  const [message, setMessage] = useState("");
  const [saving, setSaving] = useState(false);
  const [saveError, setSaveError] = useState("");

  useEffect(() => {
    if (!editing || !name) return;
    let live = true;
    setInitial(undefined);
    setText(undefined);
    setLoadError("");
    pipelines
      .getPipelineVersion({ pipeline: name, version: 0 })
      .then((res) => {
        if (!live) return;
        setInitial(res.yaml);
        setText(res.yaml);
        setBaseVersion(res.version?.number ?? 0);
      })
      .catch((e: unknown) => {
        if (live) setLoadError(errorMessage(e));
      });
    return () => {
      live = false;
    };
  }, [editing, name]);

  const { result, error: validateError, pending } = useValidation(text);
  const current = result !== undefined && result.source === text;
  const problems = result?.problems ?? NO_PROBLEMS;
  const spec = result?.spec;
  const canSave =
    caller.can("editor") &&
    current &&
    !pending &&
    !validateError &&
    problems.length === 0 &&
    spec !== undefined &&
    !saving;

  const onChange = useCallback((t: string) => {
    setText(t);
    setSaveError("");
  }, []);

  const onSave = async () => {
    if (!canSave || !spec) return;
    setSaving(true);
    setSaveError("");
    try {
      const res = await pipelines.applyPipeline({ spec, message: message.trim(), requestId: newRequestId() });
      const saved = res.pipeline?.name ?? spec.name;
      navigate(`/pipelines/${encodeURIComponent(saved)}`, {
        state: { notice: res.created ? `Saved version ${res.version?.number ?? ""}.` : "No change: the spec equals the latest version." },
      });
    } catch (e) {
      setSaveError(errorMessage(e));
    } finally {
      setSaving(false);
    }
  };

  const renamed = editing && spec !== undefined && spec.name !== "" && spec.name !== name;
  const status = validateError
    ? "error"
    : pending || !current
      ? "checking"
      : problems.length > 0
        ? "problems"
        : "valid";

  return (
    <div className="page-full">
      <div className="breadcrumb">
        <Link to="/pipelines">Pipelines</Link>
        {editing && name && (
          <>
            {" / "}
            <Link to={`/pipelines/${encodeURIComponent(name)}`}>{name}</Link>
          </>
        )}
      </div>
      <div className="page-header">
        <h1>{editing ? `Edit ${name ?? ""}` : "New pipeline"}</h1>
        {editing && baseVersion > 0 && <span className="muted">from version {baseVersion}</span>}
      </div>
      {loadError && (
        <div className="error-box" role="alert" data-testid="error">
          {loadError}
        </div>
      )}
      {!caller.can("editor") && (
        <div className="warn-box">Your role ({caller.role}) may check a spec here but not save it: saving needs editor.</div>
      )}
      {initial === undefined && !loadError && <div className="muted">Loading…</div>}
      {initial !== undefined && (
        <div className="editor-layout">
          <div className="editor-col">
            <YamlEditor ref={editor} initial={initial} onChange={onChange} problems={problems} testId="yaml-editor" />
            <div className="card" style={{ marginBottom: 0, padding: 0 }}>
              <div className="card-title" style={{ padding: "8px 12px", margin: 0, borderBottom: "1px solid var(--border)" }}>
                <h2>Problems</h2>
                <span className="spacer" />
                <span data-testid="validation-status" data-state={status} className="small">
                  {status === "checking" && <span className="muted">Checking…</span>}
                  {status === "valid" && <span className="valid-note">✓ Valid</span>}
                  {status === "problems" && (
                    <span className="error-text">
                      {problems.length} problem{problems.length === 1 ? "" : "s"}
                    </span>
                  )}
                  {status === "error" && <span className="error-text">Not checked</span>}
                </span>
              </div>
              {validateError && (
                <div className="error-box" role="alert" style={{ margin: 10 }} data-testid="validate-error">
                  {validateError}
                </div>
              )}
              {problems.length > 0 ? (
                <ul className="problems" data-testid="problems">
                  {problems.map((p, i) => (
                    <li
                      key={`${i}:${p.line}:${p.column}:${p.message}`}
                      className="problem"
                      data-testid="problem"
                      data-line={p.line}
                      onClick={() => editor.current?.goto(p.line, p.column)}
                    >
                      <span className="problem-loc">{p.line > 0 ? `line ${p.line}${p.column > 0 ? `:${p.column}` : ""}` : "file"}</span>
                      <span>
                        {p.message}
                        {p.field && <span className="problem-field"> · {p.field}</span>}
                      </span>
                    </li>
                  ))}
                </ul>
              ) : (
                !validateError && <div className="muted small" style={{ padding: "8px 12px" }}>{status === "valid" ? "No problems." : "…"}</div>
              )}
            </div>
          </div>
          <div className="editor-col">
            <div className="card" style={{ marginBottom: 0 }}>
              <div className="card-title">
                <h2>Steps</h2>
                <span className="spacer" />
                {spec && <span className="muted small">{spec.steps.length} step{spec.steps.length === 1 ? "" : "s"}</span>}
              </div>
              <div className="dag-preview" data-testid="dag-preview">
                {spec ? <Dag spec={spec} direction="TB" /> : <div className="muted small">{pending ? "Checking…" : "The spec could not be read."}</div>}
              </div>
            </div>
            {spec && (
              <div className="card" style={{ marginBottom: 0 }}>
                <dl className="kv">
                  <dt>Name</dt>
                  <dd>
                    <code>{spec.name || "—"}</code>
                  </dd>
                  <dt>Description</dt>
                  <dd>{spec.description || "—"}</dd>
                  <dt>Schedule</dt>
                  <dd>
                    {spec.schedule?.cron ? (
                      <>
                        <code>{spec.schedule.cron}</code> ({spec.schedule.timezone || "UTC"})
                      </>
                    ) : (
                      "none"
                    )}
                  </dd>
                  <dt>Params</dt>
                  <dd>{Object.keys(spec.params).length > 0 ? Object.keys(spec.params).sort().join(", ") : "none"}</dd>
                </dl>
              </div>
            )}
            <div className="card" style={{ marginBottom: 0 }}>
              <h2>Save</h2>
              {renamed && (
                <div className="warn-box">
                  The spec is named <code>{spec?.name}</code>: saving creates or updates that pipeline, not{" "}
                  <code>{name}</code>.
                </div>
              )}
              {saveError && (
                <div className="error-box" role="alert" data-testid="save-error">
                  {saveError}
                </div>
              )}
              <div className="save-bar">
                <input
                  className="input"
                  placeholder="What changed and why (like a commit message)"
                  value={message}
                  onChange={(ev) => setMessage(ev.target.value)}
                  onKeyDown={(ev) => {
                    if (ev.key === "Enter") void onSave();
                  }}
                  data-testid="save-message"
                  aria-label="Save message"
                />
                {caller.can("editor") && (
                  <button type="button" className="btn btn-primary" disabled={!canSave} onClick={() => void onSave()} data-testid="save-button">
                    {saving ? "Saving…" : "Save"}
                  </button>
                )}
              </div>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
