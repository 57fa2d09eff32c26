// Artillery bundles a .ts processor into CommonJS, which this ESM package cannot load;
// a .mjs processor is imported as it is, and Node strips the types of hooks.ts itself.
export { checkStatus, identify, soakGoesOn } from './hooks.ts'
