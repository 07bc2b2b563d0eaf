// The HTTP side of the UI: every call to afw's API goes through `api`, which sends the key
// (as a header, never in a URL), turns every non-2xx answer into an ApiError carrying afw's
// own message, and asks for a key when afw answers 401. Nothing here touches the page
// except through the `onUnauthorized` hook.

const KEY = "afw.apiKey";

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export const auth = {
  key() {
    return sessionStorage.getItem(KEY);
  },
  set(key) {
    sessionStorage.setItem(KEY, key);
  },
  forget() {
    sessionStorage.removeItem(KEY);
  },
  /** Called with a promise-returning retry when afw wants a key. */
  onUnauthorized: null,
};

function describe(status, body, text) {
  if (body && typeof body.error === "string") {
    const extra = body.details ? ` (${JSON.stringify(body.details)})` : "";
    return `${body.error}${extra}`;
  }
  if (status === 0) return "afw cannot be reached";
  return `HTTP ${status}${text ? `: ${text.slice(0, 200)}` : ""}`;
}

/**
 * One API call; resolves with the parsed JSON body (the text with `raw`, null for 204).
 * A 401 asks for a key and retries, unless `login` is false (`/metrics` has its own key).
 */
export async function api(path, { method = "GET", body, raw = false, login = true } = {}) {
  const headers = { accept: raw ? "text/plain" : "application/json" };
  const key = auth.key();
  if (key) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, `afw cannot be reached (${e.message})`, null);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  if (raw && res.ok) return text;
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (res.status === 401 && login && auth.onUnauthorized) {
    await auth.onUnauthorized(describe(401, parsed, text));
    return api(path, { method, body, raw, login });
  }
  if (!res.ok) throw new ApiError(res.status, describe(res.status, parsed, text), parsed);
  return parsed;
}

/** `/path?k=v…`, leaving out empty values. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);
