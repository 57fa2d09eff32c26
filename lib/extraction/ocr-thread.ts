// Entry point of every OCR worker thread. Recognition keeps a core busy for seconds, so
// the thread first lowers its own priority to yield to request handling in the same
// process, then hands over to tesseract.js's worker script.
import { createRequire } from 'node:module'
import { lowerThreadPriority } from './priority.ts'

lowerThreadPriority()
createRequire(import.meta.url)('tesseract.js/src/worker-script/node/index.js')
