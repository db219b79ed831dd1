/** A UUID in its text form, either case: what Postgres's uuid type reads, and so what a user id looks like. */
export const UUID_TEXT = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
