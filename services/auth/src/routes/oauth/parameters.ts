/**
 * RFC 6749 §3.1: "Parameters sent without a value MUST be treated as if they
 * were omitted from the request." So `client_id=` asks for the default
 * client, `client_secret=` beside HTTP Basic is not a second method, and
 * `grant_type=` is a missing grant type, not an unknown one. A JSON member
 * holding "" reads the same as the form parameter. A repeated parameter
 * (a list) is left as it came, to be refused or read as before.
 * @module
 */
export function presentParameters<T extends object> (body: T): Partial<T> {
  const present: Partial<T> = {}
  for (const [name, value] of Object.entries(body) as Array<[keyof T, T[keyof T]]>) {
    if (value !== '') present[name] = value
  }
  return present
}
