import { fileTypeFromBuffer } from 'file-type'

/** The media types the service stores and extracts text from. */
export const ALLOWED_MEDIA_TYPES = [
  'application/pdf',
  'image/png',
  'image/jpeg',
  'image/tiff',
  'image/webp',
] as const

export type AllowedMediaType = (typeof ALLOWED_MEDIA_TYPES)[number]

const PDF_MAGIC = Buffer.from('%PDF-')

export function isAllowedMediaType(value: string): value is AllowedMediaType {
  return (ALLOWED_MEDIA_TYPES as readonly string[]).includes(value)
}

/**
 * The real media type of a file, read from its bytes; undefined when it is empty or not
 * one of ALLOWED_MEDIA_TYPES. A declared Content-Type or file name is never consulted.
 */
export async function sniffMediaType(
  bytes: Uint8Array,
): Promise<AllowedMediaType | undefined> {
  if (bytes.length === 0) return undefined

  const detected = (await fileTypeFromBuffer(bytes))?.mime
  if (detected && isAllowedMediaType(detected)) return detected

  // file-type names some PDF-based formats (Illustrator files) by their own type; their
  // bytes are still a PDF, and the PDF is what extraction reads.
  if (Buffer.from(bytes.subarray(0, PDF_MAGIC.length)).equals(PDF_MAGIC))
    return 'application/pdf'
  return undefined
}
