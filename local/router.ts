import httpRouterHandler from '@middy/http-router'
import type { HttpMethod, Route } from '../lib/routes.ts'

export type RouteMatch =
  | { kind: 'found'; route: Route; rawPathParameters: Record<string, string> }
  | { kind: 'method-not-allowed'; allow: HttpMethod[] }
  | { kind: 'not-found' }

export type Router = { match(method: string, rawPath: string): RouteMatch }

type Found = Extract<RouteMatch, { kind: 'found' }>
type Miss = { kind: 'miss' }
type Matcher = (event: unknown, context: unknown) => Found | Miss
type MatcherRoute = {
  method: HttpMethod
  path: string
  handler: (event: { pathParameters?: Record<string, string> }) => Found
}

// The router's types expect Lambda handlers; here each route's handler returns the match.
const buildRouter = httpRouterHandler as unknown as (options: {
  routes: MatcherRoute[]
  notFoundResponse: () => Miss
}) => Matcher

const MISS: Miss = { kind: 'miss' }
const NOT_FOUND: RouteMatch = { kind: 'not-found' }

function buildMatcher(routes: readonly Route[]): Matcher {
  const matcherRoutes = routes.map(
    (route): MatcherRoute => ({
      method: route.method,
      path: route.path,
      handler: function matched(event) {
        return { kind: 'found', route, rawPathParameters: event.pathParameters ?? {} }
      },
    }),
  )
  return buildRouter({ routes: matcherRoutes, notFoundResponse: () => MISS })
}

/**
 * Matches a method and a raw path (still percent-encoded) against the route table.
 *
 * `@middy/http-router` does the matching, fed a minimal synthetic event: it only
 * selects the route; the gateway builds the real event and writes the response. It
 * accepts one trailing slash (`/documents/` is `/documents`) and never matches an empty
 * path parameter (`/documents//text` is 404). A path known under other methods answers
 * 405 with the methods that would match; that probe runs only on a miss.
 */
export function createRouter(routes: readonly Route[]): Router {
  const matcher = buildMatcher(routes)
  const methods = [...new Set(routes.map((route) => route.method))]

  function probe(method: string, rawPath: string): Found | Miss {
    const event = { version: '2.0', requestContext: { http: { method, path: rawPath } } }
    return matcher(event, {})
  }

  function match(method: string, rawPath: string): RouteMatch {
    if (!rawPath.startsWith('/')) return NOT_FOUND

    const found = probe(method, rawPath)
    if (found.kind === 'found') return found

    const allow = methods.filter((other) => probe(other, rawPath).kind === 'found')
    return allow.length > 0 ? { kind: 'method-not-allowed', allow } : NOT_FOUND
  }

  return { match }
}
