/** The largest request body read, in bytes: Fastify's limit, the form parser's, and the 413's message. */
export const BODY_LIMIT = 16 * 1024
