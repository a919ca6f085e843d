/**
 * The access token of a lab that needs one. It may arrive once in the address
 * (`/?token=…`, a link the user was given); it is then moved into this tab's
 * sessionStorage and out of the address bar, and sent only as a header (HTTP) or a WebSocket
 * subprotocol. A token in a URL would travel with every link copied from the address bar or
 * "Copy link", and land in browser history and server logs.
 */
const KEY = "lab.token";
/** Where the token lives when sessionStorage is unavailable (e.g. storage disabled). */
let fallback: string | undefined;

/** The `token` query parameter of a URL, and the URL without it (pure; tested). */
export function splitToken(href: string): { token: string | null; href: string } {
  const u = new URL(href);
  const token = u.searchParams.get("token");
  if (token === null) return { token: null, href };
  u.searchParams.delete("token");
  // URLSearchParams re-encodes the rest; keep the view's readable commas and colons.
  u.search = u.searchParams.toString().replaceAll("%2C", ",").replaceAll("%3A", ":");
  return { token, href: u.toString() };
}

/** A link to the view that can be shared: the address without any token. */
export function shareableLink(href: string): string {
  return splitToken(href).href;
}

/** On load: a `?token=` in the address goes to sessionStorage and out of the address bar. */
export function adoptTokenFromAddress(): void {
  const { token, href } = splitToken(location.href);
  if (token === null) return;
  try {
    sessionStorage.setItem(KEY, token);
  } catch {
    fallback = token;
  }
  history.replaceState(history.state, "", href);
}

export function accessToken(): string | undefined {
  try {
    return sessionStorage.getItem(KEY) ?? fallback;
  } catch {
    return fallback;
  }
}
