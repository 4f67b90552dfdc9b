import { forwardRef, useEffect, useImperativeHandle, useRef } from "react";
import { EditorState } from "@codemirror/state";
import {
  EditorView,
  drawSelection,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab, insertNewline } from "@codemirror/commands";
import { bracketMatching, defaultHighlightStyle, syntaxHighlighting } from "@codemirror/language";
import { lintGutter, setDiagnostics } from "@codemirror/lint";
import { yaml } from "@codemirror/lang-yaml";
import { problemRange, problemsToDiagnostics, type LineProblem } from "../pages/pipeline/editorLint";

export interface YamlEditorHandle {
  /** Puts the cursor at a line (1-based) and column and focuses the editor. */
  goto(line: number, column: number): void;
  /** Replaces the whole text. */
  setText(text: string): void;
}

export interface YamlEditorProps {
  /** The text the editor starts with. */
  initial: string;
  onChange: (text: string) => void;
  problems: readonly LineProblem[];
  testId?: string;
}

/** A CodeMirror 6 YAML editor whose problems are marked at their lines (gutter and underline). */
export const YamlEditor = forwardRef<YamlEditorHandle, YamlEditorProps>(function YamlEditor(
  { initial, onChange, problems, testId },
  ref,
) {
  const host = useRef<HTMLDivElement>(null);
  const view = useRef<EditorView | null>(null);
  const onChangeRef = useRef(onChange);
  onChangeRef.current = onChange;
  const initialRef = useRef(initial);

  useEffect(() => {
    if (!host.current) return;
    const state = EditorState.create({
      doc: initialRef.current,
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        history(),
        drawSelection(),
        highlightActiveLine(),
        bracketMatching(),
        syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
        yaml(),
        lintGutter(),
        EditorState.tabSize.of(2),
        // Enter inserts a bare newline: text typed or pasted line by line keeps exactly its own indentation.
        keymap.of([{ key: "Enter", run: insertNewline }, indentWithTab, ...defaultKeymap, ...historyKeymap]),
        EditorView.contentAttributes.of({ "aria-label": "Pipeline YAML", spellcheck: "false" }),
        EditorView.updateListener.of((u) => {
          if (u.docChanged) onChangeRef.current(u.state.doc.toString());
        }),
      ],
    });
    const v = new EditorView({ state, parent: host.current });
    view.current = v;
    return () => {
      v.destroy();
      view.current = null;
    };
  }, []);

  const shown = useRef(0);
  useEffect(() => {
    const v = view.current;
    if (!v) return;
    const diagnostics = problemsToDiagnostics(v.state.doc, problems);
    if (diagnostics.length === 0 && shown.current === 0) return;
    shown.current = diagnostics.length;
    v.dispatch(setDiagnostics(v.state, diagnostics));
  }, [problems]);

  useImperativeHandle(
    ref,
    () => ({
      goto(line: number, column: number) {
        const v = view.current;
        if (!v || line <= 0) return;
        const { from } = problemRange(v.state.doc, line, column);
        v.dispatch({ selection: { anchor: from }, effects: EditorView.scrollIntoView(from, { y: "center" }) });
        v.focus();
      },
      setText(text: string) {
        const v = view.current;
        if (!v) return;
        v.dispatch({ changes: { from: 0, to: v.state.doc.length, insert: text } });
      },
    }),
    [],
  );

  return <div className="yaml-editor" ref={host} data-testid={testId} />;
});
