/** A UUID in its text form, either case: what Postgres's uuid type reads, and so what a user id looks like. */
export const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * UUID_TEXT for a JSON schema (no flags there): beside `format: 'uuid'`, which
 * also takes RFC 4122's URN form (`urn:uuid:…`) that Postgres's uuid type refuses.
 */
export const UUID_PATTERN = '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
