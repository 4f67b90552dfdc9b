import type { Pipeline } from "@legato/client/gen/legato/v1/pipeline_pb";

export interface PipelineFilter {
  /** Name prefix (the server filters by it too; the client repeats it for rows loaded before). */
  text: string;
  pausedOnly: boolean;
  showArchived: boolean;
}

/** The pipelines the list shows: by name prefix, archived only when asked, paused only when asked. */
export function filterPipelines(items: readonly Pipeline[], f: PipelineFilter): Pipeline[] {
  const prefix = f.text.trim().toLowerCase();
  return items.filter((p) => {
    if (prefix && !p.name.toLowerCase().startsWith(prefix)) return false;
    if (!f.showArchived && p.archived) return false;
    if (f.pausedOnly && !(p.schedule?.paused ?? false)) return false;
    return true;
  });
}
