import { Fragment } from "react";
import { Link } from "react-router-dom";
import { shortRunId } from "../../pages/run/util";

// Run ids are lower-case ULIDs: 26 characters of Crockford base32.
const RUN_ID = /\b[0-9a-hjkmnp-tv-z]{26}\b/g;

/** Text from the server with the run ids in it made links to those runs. */
export function RunIdText({ text }: { text: string }) {
  const parts: (string | { id: string })[] = [];
  let last = 0;
  for (const m of text.matchAll(RUN_ID)) {
    const at = m.index ?? 0;
    if (at > last) parts.push(text.slice(last, at));
    parts.push({ id: m[0] });
    last = at + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return (
    <>
      {parts.map((p, i) =>
        typeof p === "string" ? (
          <Fragment key={i}>{p}</Fragment>
        ) : (
          <Link key={i} to={`/runs/${p.id}`} title={p.id} className="mono">
            {shortRunId(p.id)}
          </Link>
        ),
      )}
    </>
  );
}
