import { inject } from 'vitest'
import { resetConfig } from '../../lib/config.ts'

// Runs in every test worker before each file: the services from global-setup.ts.
Object.assign(process.env, inject('serviceEnv'))
resetConfig()
