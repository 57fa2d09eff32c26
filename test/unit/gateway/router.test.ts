import { describe, expect, it } from 'vitest'
import { routes } from '../../../lib/routes.ts'
import { createRouter } from '../../../local/router.ts'

const router = createRouter(routes)

describe('routing with the service route table', () => {
  it('finds each route with its template and raw parameters', () => {
    const match = router.match('GET', '/documents/ab%2Fc/content')

    expect(match).toMatchObject({
      kind: 'found',
      route: {
        method: 'GET',
        path: '/documents/{id}/content',
        function: 'documents-content',
      },
      rawPathParameters: { id: 'ab%2Fc' },
    })
  })

  it('tells a static route from a parameter at the same depth', () => {
    expect(router.match('GET', '/documents')).toMatchObject({
      route: { function: 'documents-list' },
    })
    expect(router.match('POST', '/documents')).toMatchObject({
      route: { function: 'documents-create' },
    })
    expect(router.match('DELETE', '/documents/1')).toMatchObject({
      route: { function: 'documents-delete' },
    })
  })

  it('lists the methods a known path answers when the method is wrong', () => {
    expect(router.match('PUT', '/documents/1')).toEqual({
      kind: 'method-not-allowed',
      allow: ['GET', 'DELETE'],
    })
    expect(router.match('GET', '/auth/login')).toEqual({
      kind: 'method-not-allowed',
      allow: ['POST'],
    })
  })

  it('finds nothing for unknown paths, case changes and extra segments', () => {
    for (const path of [
      '/',
      '/Documents',
      '/documents/1/text/more',
      'documents',
      '/health/x',
    ]) {
      expect(router.match('GET', path)).toEqual({ kind: 'not-found' })
    }
  })
})
