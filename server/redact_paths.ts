/**
 * Takes filesystem paths out of a message meant for a client: replies must not tell a
 * visitor where the lab lives on disk (the data directory, the checkout, the user's home).
 * Deno's fs errors end in `op 'PATH'` (or `'FROM' -> 'TO'`); other messages may carry a bare
 * absolute path or a file: URL.
 */
const QUOTED = /'[^'\n]*[/\\][^'\n]*'/g;
const FILE_URL = /\bfile:\/\/[^\s'"`)]*/g;
const ABSOLUTE = /(^|[\s"'`(=,:])(?:\/|[A-Za-z]:\\)(?:[^\s'"`),;]*[^\s'"`),;:.])?/g;

export function redactPaths(message: string): string {
  return message
    .replace(QUOTED, "'(path)'")
    .replace(FILE_URL, "(path)")
    .replace(ABSOLUTE, "$1(path)");
}
