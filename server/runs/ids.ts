/** Run ids: sortable by creation time, safe in file names and URLs. */
export function newRunId(experiment: string, now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  const rand = crypto.getRandomValues(new Uint8Array(3));
  return `${experiment}-${stamp}-${[...rand].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export const RUN_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,120}$/;
