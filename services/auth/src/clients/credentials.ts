/**
 * What a request says about its client (RFC 6749 §2.3): HTTP Basic
 * (`client_secret_basic`, id and secret form-urlencoded before base64,
 * §2.3.1), `client_id` + `client_secret` in the body (`client_secret_post`),
 * or a bare `client_id` (a public client). Parsing only; authenticate.ts
 * decides whether the client is who it says.
 * @module
 */
import { CLIENT_ID_PATTERN } from '../config.js'
import { OAuthError } from '../errors.js'

export type ClientCredentials =
  // `basic`: the client was named in HTTP Basic with an empty secret, so a refusal carries the Basic challenge.
  | { method: 'none', clientId: string | undefined, basic?: true }
  | { method: 'client_secret_basic' | 'client_secret_post', clientId: string, secret: string }

export interface PresentedCredentials {
  authorization: string | undefined
  clientId: string | undefined
  clientSecret: string | undefined
}

export const BASIC_CHALLENGE = 'Basic realm="tessera", charset="UTF-8"'

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/
const utf8 = new TextDecoder('utf-8', { fatal: true })

function badBasic (detail: string): OAuthError {
  return new OAuthError('invalid_client', 'client authentication failed', { detail: `basic credentials: ${detail}`, challenge: BASIC_CHALLENGE })
}

/** application/x-www-form-urlencoded decoding of one Basic half; undefined when a percent escape is broken. */
function formDecode (text: string): string | undefined {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '))
  } catch {
    return undefined
  }
}

function basic (encoded: string): { clientId: string, secret: string } {
  if (!BASE64.test(encoded)) throw badBasic('not base64')
  let decoded: string
  try {
    decoded = utf8.decode(Buffer.from(encoded, 'base64'))
  } catch {
    throw badBasic('not UTF-8')
  }
  const colon = decoded.indexOf(':')
  if (colon < 0) throw badBasic('no colon')
  const clientId = formDecode(decoded.slice(0, colon))
  const secret = formDecode(decoded.slice(colon + 1))
  if (clientId === undefined || secret === undefined) throw badBasic('bad percent-encoding')
  if (clientId === '') throw badBasic('empty client id')
  if (!CLIENT_ID_PATTERN.test(clientId)) throw badBasic('client id outside the pattern')
  return { clientId, secret }
}

/** Throws invalid_request for a malformed or doubled authentication, invalid_client for unreadable Basic credentials. */
export function clientCredentials (presented: PresentedCredentials): ClientCredentials {
  const header = presented.authorization?.trim()
  // A header that names the Basic scheme is read or refused, never ignored:
  // ignored, a confidential client's malformed header would run as the default client.
  const isBasic = header !== undefined && /^Basic(?:\s|$)/i.test(header)
  const scheme = isBasic ? /^Basic(?: +(\S*))?$/i.exec(header) : undefined
  if (scheme === null) throw badBasic('not one space-separated credential')
  const bodyId = presented.clientId
  if (bodyId !== undefined && !CLIENT_ID_PATTERN.test(bodyId)) {
    throw new OAuthError('invalid_request', 'client_id: must be 1 to 64 of A-Z a-z 0-9 . _ -')
  }
  if (scheme !== undefined) {
    if (presented.clientSecret !== undefined) {
      throw new OAuthError('invalid_request', 'use one client authentication method: HTTP Basic or client_secret in the body, not both')
    }
    const { clientId, secret } = basic(scheme[1] ?? '')
    if (bodyId !== undefined && bodyId !== clientId) throw new OAuthError('invalid_request', 'client_id: differs from the HTTP Basic client id')
    // An empty password is no secret (RFC 6749 §3.1: a parameter without a value is omitted): Basic then only
    // names the client, which is how requests-oauthlib's fetch_token sends a public client (`id:`, no client_id in the body).
    if (secret === '') return { method: 'none', clientId, basic: true }
    return { method: 'client_secret_basic', clientId, secret }
  }
  if (presented.clientSecret !== undefined) {
    if (bodyId === undefined) throw new OAuthError('invalid_request', 'client_id: is required with client_secret')
    return { method: 'client_secret_post', clientId: bodyId, secret: presented.clientSecret }
  }
  return { method: 'none', clientId: bodyId }
}
