/**
 * The version this build reports (`tessera --version`, tessera_build_info):
 * the one in services/auth/package.json, which ships in every image.
 * @module
 */
import { readFileSync } from 'node:fs'

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version
