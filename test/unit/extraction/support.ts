import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ExtractionLimits } from '../../../lib/extraction/extract.ts'

/** The shared corpus of real documents: CORPUS_DIR, or `../shared/corpus` beside the repo. */
export const CORPUS_DIR = process.env.CORPUS_DIR
  ? path.resolve(process.env.CORPUS_DIR)
  : fileURLToPath(new URL('../../../../shared/corpus/', import.meta.url))

export type ManifestDocument = {
  file: string
  mediaType: string
  pages?: number
  textSource: 'pdf-text-layer' | 'ocr' | 'mixed' | 'none'
  expectStatus?: string
  expect: string[]
}

export type Manifest = {
  documents: ManifestDocument[]
  badInputs: { file: string; expect: string }[]
}

export async function readManifest(): Promise<Manifest> {
  return JSON.parse(
    await readFile(path.join(CORPUS_DIR, 'manifest.json'), 'utf8'),
  ) as Manifest
}

export function corpusFile(file: string): Promise<Buffer> {
  return readFile(path.join(CORPUS_DIR, file))
}

/** Case-insensitive, whitespace-collapsed: how the manifest says text is compared. */
export function normalise(text: string): string {
  return text.replace(/\s+/g, ' ').trim().toLowerCase()
}

/** The configured defaults, spelled out so the tests do not depend on the environment. */
export const LIMITS: ExtractionLimits = {
  maxPages: 200,
  maxPixels: 50_000_000,
  timeoutMs: 60_000,
}
