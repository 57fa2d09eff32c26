// Bundled by the container test beside the real bundles and run inside the image with no
// network: extracts the text of each file named on the command line (a scanned PDF goes
// through pdf.js, the canvas, sharp and OCR) and prints one JSON line per file.
import { readFile } from 'node:fs/promises'
import { extractDocument } from '../../lib/extraction/extract.ts'
import { closeOcrPool } from '../../lib/extraction/ocr.ts'

const MEDIA_TYPES: Record<string, string> = {
  pdf: 'application/pdf',
  png: 'image/png',
  jpg: 'image/jpeg',
}

for (const file of process.argv.slice(2)) {
  const mediaType = MEDIA_TYPES[file.split('.').pop() ?? ''] ?? 'application/octet-stream'
  const result = await extractDocument(await readFile(file), mediaType)
  console.log(JSON.stringify({ file, ...result, text: result.text.slice(0, 400) }))
}
await closeOcrPool()
