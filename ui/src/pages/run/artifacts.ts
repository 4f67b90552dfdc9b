import { agents } from "../../api";
import type { Artifact } from "@legato/client/gen/legato/v1/run_pb";

/** An artifact read through AgentService.DownloadArtifact (its description, then its
 * bytes in chunks) as a Blob of its media type. */
export async function downloadArtifact(
  artifactId: string,
  signal?: AbortSignal,
): Promise<{ artifact?: Artifact; blob: Blob }> {
  let artifact: Artifact | undefined;
  const chunks: Uint8Array<ArrayBuffer>[] = [];
  for await (const msg of agents.downloadArtifact({ artifactId }, { signal })) {
    if (msg.message.case === "artifact") artifact = msg.message.value;
    else if (msg.message.case === "chunk") chunks.push(new Uint8Array(msg.message.value));
  }
  return { artifact, blob: new Blob(chunks, { type: artifact?.mediaType || "application/octet-stream" }) };
}

/** Saves a Blob as a file through a temporary link. */
export function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function isImage(mediaType: string): boolean {
  return /^image\/(png|jpeg|gif|webp|svg\+xml|bmp|avif)$/i.test(mediaType.split(";")[0].trim());
}
