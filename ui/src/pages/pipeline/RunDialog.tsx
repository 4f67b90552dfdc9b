import { useMemo, useState } from "react";
import { useNavigate } from "react-router-dom";
import { errorMessage, newRequestId, runs } from "../../api";
import { Dialog } from "../../components/Dialog";
import { TriggerKind } from "@legato/client/gen/legato/v1/run_pb";
import type { ParamSpec } from "@legato/client/gen/legato/v1/spec_pb";
import { buildParams, paramFields, type ParamField } from "./params";

function FieldInput({
  field,
  value,
  onChange,
  invalid,
}: {
  field: ParamField;
  value: string;
  onChange: (v: string) => void;
  invalid: boolean;
}) {
  const common = {
    id: `param-${field.name}`,
    "data-testid": `param-${field.name}`,
    name: field.name,
    className: `input${invalid ? " invalid" : ""}`,
    "aria-invalid": invalid,
  };
  switch (field.control) {
    case "choice":
      return (
        <select {...common} className={`select${invalid ? " invalid" : ""}`} value={value} onChange={(ev) => onChange(ev.target.value)}>
          {!field.required && <option value="">{field.hasDefault ? "(default)" : "(not set)"}</option>}
          {field.required && value === "" && <option value="">Choose…</option>}
          {field.choices.map((c) => (
            <option key={c.label} value={c.label}>
              {c.label}
            </option>
          ))}
        </select>
      );
    case "boolean":
      return (
        <select {...common} className={`select${invalid ? " invalid" : ""}`} value={value} onChange={(ev) => onChange(ev.target.value)}>
          {(!field.required || value === "") && <option value="">{field.required ? "Choose…" : "(not set)"}</option>}
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      );
    case "number":
      return (
        <input
          {...common}
          type="text"
          inputMode={field.type === "integer" ? "numeric" : "decimal"}
          value={value}
          onChange={(ev) => onChange(ev.target.value)}
          placeholder={field.type}
        />
      );
    case "date":
      return <input {...common} type="date" value={value} onChange={(ev) => onChange(ev.target.value)} />;
    case "json":
      return (
        <textarea
          {...common}
          rows={3}
          className={`input mono${invalid ? " invalid" : ""}`}
          value={value}
          onChange={(ev) => onChange(ev.target.value)}
          placeholder='{"key": "value"}'
        />
      );
    default:
      return (
        <input
          {...common}
          type="text"
          value={value}
          onChange={(ev) => onChange(ev.target.value)}
          placeholder={field.type === "datetime" ? "2026-06-12T09:00:00+02:00" : field.type === "any" ? "text or JSON" : ""}
        />
      );
  }
}

/** The Run form: one input per parameter of the spec (typed, with defaults), then TriggerRun. */
export function RunDialog({
  pipeline,
  version,
  params,
  onClose,
}: {
  pipeline: string;
  version: number;
  params: Record<string, ParamSpec>;
  onClose: () => void;
}) {
  const navigate = useNavigate();
  const fields = useMemo(() => paramFields(params), [params]);
  const [texts, setTexts] = useState<Record<string, string>>(() =>
    Object.fromEntries(fields.map((f) => [f.name, f.initial])),
  );
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const [requestId] = useState(newRequestId);

  const submit = async () => {
    const built = buildParams(fields, texts);
    if (!built.ok) {
      setErrors(built.errors);
      return;
    }
    setErrors({});
    setBusy(true);
    setError("");
    try {
      const res = await runs.triggerRun({
        pipeline,
        version: 0,
        params: built.params,
        requestId,
        kind: TriggerKind.MANUAL,
      });
      if (!res.run) throw new Error("The server answered without a run.");
      navigate(`/runs/${encodeURIComponent(res.run.id)}`);
    } catch (e) {
      setError(errorMessage(e));
      setBusy(false);
    }
  };

  return (
    <Dialog
      title={`Run ${pipeline}`}
      onClose={onClose}
      testId="run-dialog"
      footer={
        <>
          <button type="button" className="btn" onClick={onClose} data-testid="run-cancel">
            Cancel
          </button>
          <button type="button" className="btn btn-primary" onClick={() => void submit()} disabled={busy} data-testid="run-submit">
            {busy ? "Starting…" : "Run"}
          </button>
        </>
      }
    >
      <form
        onSubmit={(ev) => {
          ev.preventDefault();
          void submit();
        }}
      >
        <p className="muted">
          Starts a manual run of the latest version (v{version}).
          {fields.length === 0 ? " This pipeline takes no parameters." : ""}
        </p>
        {error && (
          <div className="error-box" role="alert" data-testid="run-error">
            {error}
          </div>
        )}
        {fields.map((f) => (
          <div className="field" key={f.name}>
            <label htmlFor={`param-${f.name}`}>
              {f.name}
              {f.required && <span className="req">*</span>} <span className="muted small">{f.type}</span>
            </label>
            <FieldInput
              field={f}
              value={texts[f.name] ?? ""}
              onChange={(v) => setTexts((t) => ({ ...t, [f.name]: v }))}
              invalid={errors[f.name] !== undefined}
            />
            {errors[f.name] && <span className="error-text">{errors[f.name]}</span>}
            {f.description && <span className="hint">{f.description}</span>}
          </div>
        ))}
        <button type="submit" hidden aria-hidden="true" tabIndex={-1} />
      </form>
    </Dialog>
  );
}
