import type middy from '@middy/core'
import { forbidden } from '../errors.ts'
import type { ApiEvent, ApiRequest, ApiResult, ServiceContext } from '../http.ts'
import type { AuthUser } from './authenticate.ts'

export type Role = AuthUser['role']

/** Lets only accounts with one of the roles through; must follow authenticate(). */
export function authorize(
  roles: readonly Role[],
): middy.MiddlewareObj<ApiEvent, ApiResult, Error, ServiceContext> {
  function before(request: ApiRequest): void {
    const user = request.context.state.user
    if (!user) throw new Error('authorize() must come after authenticate()')
    if (!roles.includes(user.role)) throw forbidden('This needs another role')
  }
  return { before }
}
