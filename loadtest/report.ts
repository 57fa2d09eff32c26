/**
 * Turns a load-test run's files into `report.html` and `summary.md` in the same folder:
 * the per-endpoint table against the scenario's `ensure` conditions, and SVG charts made
 * here by Observable Plot (no script and no network when the page is viewed).
 *
 *   node loadtest/report.ts loadtest/reports/<run>    (re-makes the report of a run)
 *
 * Reads `artillery.json` (Artillery's `--output`) and `samples.json` (loadtest/run.ts).
 */
import { readFile, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import * as Plot from '@observablehq/plot'
import { parseHTML } from 'linkedom'
import { parse as parseYaml } from 'yaml'
import type { CpuSample } from './procfs.ts'

export type LoadSample = { at: number; one: number; five: number }

export type RunInfo = {
  mode: 'soak' | 'smoke'
  target: string
  /** The file each upload sends. */
  upload: string
  startedAt: string
  machine: string
  artilleryExit: number
  drainSeconds: number | null
  drainLimitSeconds: number | null
  documentStatuses?: Record<string, number>
}

type Samples = {
  info: RunInfo
  usage: Record<string, CpuSample[]>
  backlog: { at: number; queued: number; active: number }[]
  loads: LoadSample[]
}

type Summary = Record<string, number>
type Period = {
  period: string
  counters: Record<string, number>
  summaries: Record<string, Summary>
}
type ArtilleryOutput = { aggregate: Period; intermediate: Period[] }

type Check = {
  expression: string
  metric: string
  operator: '<=' | '<' | '=='
  bound: number
  actual: number | undefined
  passed: boolean
}

type EndpointRow = {
  name: string
  requests: number
  codes: Record<string, number>
  summary: Summary | undefined
  checks: Check[]
}

const HERE = path.dirname(fileURLToPath(import.meta.url))
const ENDPOINT_PREFIX = 'plugins.metrics-by-endpoint.response_time.'
const OVERALL = 'http.response_time'
const ENDPOINTS = ['register', 'login', 'upload', 'list', 'get']
const AGGREGATIONS = ['p50', 'p95', 'p99', 'max'] as const
const CONDITION = /^([\w.-]+)\s*(<=|<|==)\s*(\d+(?:\.\d+)?)$/

/** The `ensure` conditions of the scenario, each checked against the aggregate. */
async function readChecks(aggregate: Period): Promise<Check[]> {
  const script = parseYaml(await readFile(path.join(HERE, 'scenario.yml'), 'utf8'))
  const conditions: { expression: string }[] = script.config?.ensure?.conditions ?? []

  return conditions.map(({ expression }) => {
    const match = expression.trim().match(CONDITION)
    if (!match) throw new Error(`cannot read the ensure condition ${expression}`)
    const [, metric, operator, bound] = match as [
      string,
      string,
      Check['operator'],
      string,
    ]
    const actual = metricValue(aggregate, metric)
    const limit = Number(bound)
    const passed =
      actual !== undefined &&
      (operator === '<='
        ? actual <= limit
        : operator === '<'
          ? actual < limit
          : actual === limit)
    return { expression, metric, operator, bound: limit, actual, passed }
  })
}

function metricValue(period: Period, metric: string): number | undefined {
  if (metric in period.counters) return period.counters[metric]
  const dot = metric.lastIndexOf('.')
  return period.summaries[metric.slice(0, dot)]?.[metric.slice(dot + 1)]
}

function endpointRows(aggregate: Period, checks: Check[]): EndpointRow[] {
  const codesOf = (name: string) => {
    const prefix = `plugins.metrics-by-endpoint.${name}.codes.`
    return Object.fromEntries(
      Object.entries(aggregate.counters)
        .filter(([key]) => key.startsWith(prefix))
        .map(([key, count]) => [key.slice(prefix.length), count]),
    )
  }
  const rows = ENDPOINTS.map((name): EndpointRow => {
    const codes = codesOf(name)
    return {
      name,
      requests: Object.values(codes).reduce((sum, count) => sum + count, 0),
      codes,
      summary: aggregate.summaries[`${ENDPOINT_PREFIX}${name}`],
      checks: checks.filter((check) =>
        check.metric.startsWith(`${ENDPOINT_PREFIX}${name}.`),
      ),
    }
  })
  const allCodes = Object.fromEntries(
    Object.entries(aggregate.counters)
      .filter(([key]) => key.startsWith('http.codes.'))
      .map(([key, count]) => [key.slice('http.codes.'.length), count]),
  )
  rows.push({
    name: 'all requests',
    requests: aggregate.counters['http.requests'] ?? 0,
    codes: allCodes,
    summary: aggregate.summaries[OVERALL],
    checks: checks.filter((check) => check.metric.startsWith(`${OVERALL}.`)),
  })
  return rows
}

function boundFor(row: EndpointRow, aggregation: string): Check | undefined {
  return row.checks.find((check) => check.metric.endsWith(`.${aggregation}`))
}

function ms(value: number | undefined): string {
  return value === undefined ? '–' : `${Number(value.toFixed(1))}`
}

function codesText(codes: Record<string, number>): string {
  const entries = Object.entries(codes)
  return entries.length === 0
    ? '–'
    : entries.map(([code, n]) => `${code}: ${n}`).join(', ')
}

function stats(samples: readonly CpuSample[] | undefined) {
  if (!samples || samples.length === 0) return undefined
  const cpu = samples.map((sample) => sample.cpuPercent)
  const mean = cpu.reduce((sum, value) => sum + value, 0) / cpu.length
  return {
    meanCpu: Math.round(mean),
    maxCpu: Math.round(Math.max(...cpu)),
    meanNiced: Math.round(
      samples.reduce((sum, sample) => sum + sample.nicedCpuPercent, 0) / samples.length,
    ),
    maxRss: Math.round(Math.max(...samples.map((sample) => sample.rssMiB))),
    lastRss: Math.round(samples.at(-1)?.rssMiB ?? 0),
  }
}

const PROCESS_LABELS: Record<string, string> = {
  service:
    'gateway (with the launcher and the embedded S3 server, as npm start runs them)',
  worker: 'extraction worker (its own process, at a lower priority)',
  postgres: 'PostgreSQL (postmaster and backends)',
  artillery: 'Artillery (load generator)',
}

// Charts

function chart(options: Plot.PlotOptions): string {
  const { document } = parseHTML('<!doctype html><html><body></body></html>')
  const figure = Plot.plot({
    document,
    width: 900,
    height: 260,
    marginLeft: 50,
    style: { fontSize: '12px', background: 'white' },
    ...options,
  } as Plot.PlotOptions)
  return figure.outerHTML
}

function charts(output: ArtilleryOutput, samples: Samples, checks: Check[]): string[] {
  const periods = output.intermediate.map((period) => ({
    ...period,
    at: Number(period.period),
  }))
  const start = periods[0]?.at ?? Date.now()
  const seconds = (at: number) => Math.round((at - start) / 100) / 10
  const step =
    periods.length > 1 ? ((periods[1]?.at ?? 0) - (periods[0]?.at ?? 0)) / 1000 : 10

  const latency = periods.flatMap((period) =>
    (['p50', 'p95', 'p99'] as const).flatMap((aggregation) => {
      const value = period.summaries[OVERALL]?.[aggregation]
      return value === undefined
        ? []
        : [{ t: seconds(period.at), ms: value, series: aggregation }]
    }),
  )
  const overallBounds = checks.filter(
    (check) => check.metric.startsWith(`${OVERALL}.`) && check.operator !== '==',
  )
  const perEndpoint = periods.flatMap((period) =>
    ENDPOINTS.flatMap((name) => {
      const value = period.summaries[`${ENDPOINT_PREFIX}${name}`]?.p95
      return value === undefined
        ? []
        : [{ t: seconds(period.at), ms: value, endpoint: name }]
    }),
  )
  const rates = periods.flatMap((period) =>
    ENDPOINTS.map((name) => {
      const count = Object.entries(period.counters)
        .filter(([key]) => key.startsWith(`plugins.metrics-by-endpoint.${name}.codes.`))
        .reduce((sum, [, value]) => sum + value, 0)
      return { t: seconds(period.at), rate: count / step, endpoint: name }
    }),
  )
  const usage = Object.entries(samples.usage).flatMap(([name, list]) =>
    list.map((sample) => ({ ...sample, t: seconds(sample.at), process: name })),
  )
  const backlog = samples.backlog
    .filter((sample) => sample.queued >= 0)
    .map((sample) => ({ t: seconds(sample.at), jobs: sample.queued + sample.active }))

  const time = { label: 'seconds since the first period', grid: true }
  const figures = [
    `<h3>Latency percentiles, all requests (per ${step} s period)</h3>`,
    chart({
      x: time,
      y: { label: 'ms', grid: true },
      color: { legend: true },
      marks: [
        Plot.ruleY(overallBounds, { y: 'bound', stroke: '#999', strokeDasharray: '4 3' }),
        Plot.lineY(latency, { x: 't', y: 'ms', stroke: 'series', marker: true }),
      ],
    }),
    '<h3>p95 per endpoint</h3>',
    chart({
      x: time,
      y: { label: 'ms', grid: true },
      color: { legend: true },
      marks: [Plot.lineY(perEndpoint, { x: 't', y: 'ms', stroke: 'endpoint' })],
    }),
    '<h3>Request rate per endpoint (requests/s)</h3>',
    chart({
      x: time,
      y: { label: 'requests/s', grid: true },
      color: { legend: true },
      marks: [Plot.areaY(rates, { x: 't', y: 'rate', fill: 'endpoint', curve: 'step' })],
    }),
  ]
  if (usage.length > 0) {
    figures.push(
      '<h3>CPU (100 % = one core)</h3>',
      chart({
        x: time,
        y: { label: '% CPU', grid: true },
        color: { legend: true },
        marks: [Plot.lineY(usage, { x: 't', y: 'cpuPercent', stroke: 'process' })],
      }),
      '<h3>Resident memory (MiB)</h3>',
      chart({
        x: time,
        y: { label: 'MiB', grid: true },
        color: { legend: true },
        marks: [Plot.lineY(usage, { x: 't', y: 'rssMiB', stroke: 'process' })],
      }),
    )
  }
  if (backlog.length > 0) {
    figures.push(
      '<h3>Extraction backlog (jobs queued or running)</h3>',
      chart({
        x: time,
        y: { label: 'jobs', grid: true },
        marks: [
          Plot.lineY(backlog, { x: 't', y: 'jobs', curve: 'step' }),
          Plot.ruleY([0]),
        ],
      }),
    )
  }
  return figures
}

// Text

function verdict(passed: boolean): string {
  return passed ? 'pass' : 'FAIL'
}

function cell(row: EndpointRow, aggregation: (typeof AGGREGATIONS)[number]): string {
  const value = ms(row.summary?.[aggregation])
  const bound = boundFor(row, aggregation)
  return bound ? `${value} (≤ ${bound.bound})` : value
}

function markdown(
  info: RunInfo,
  rows: EndpointRow[],
  checks: Check[],
  usage: Record<string, CpuSample[]>,
  loads: LoadSample[],
  passed: boolean,
): string {
  const lines = [
    `# Load test (${info.mode}): ${verdict(passed)}`,
    '',
    `- started ${info.startedAt} against ${info.target}`,
    `- machine: ${info.machine}`,
    `- uploaded file: ${info.upload}`,
    `- load average during the run (1 min): ${loadText(loads)}`,
    `- extraction backlog: ${drainText(info)}`,
    ...(info.documentStatuses
      ? [`- documents by status after the run: ${codesText(info.documentStatuses)}`]
      : []),
    '',
    'Response times in ms (time to first byte per endpoint; bounds from scenario.yml).',
    '',
    '| endpoint | requests | codes | p50 | p95 | p99 | max | verdict |',
    '| --- | ---: | --- | ---: | ---: | ---: | ---: | --- |',
    ...rows.map(
      (row) =>
        `| ${row.name} | ${row.requests} | ${codesText(row.codes)} | ${cell(row, 'p50')} | ` +
        `${cell(row, 'p95')} | ${cell(row, 'p99')} | ${ms(row.summary?.max)} | ` +
        `${verdict(row.checks.every((check) => check.passed))} |`,
    ),
    '',
    '| process | mean CPU % | max CPU % | of which niced (OCR) % | max RSS MiB |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...Object.entries(usage).flatMap(([name, samples]) => {
      const summary = stats(samples)
      if (!summary) return []
      return [
        `| ${PROCESS_LABELS[name] ?? name} | ${summary.meanCpu} | ${summary.maxCpu} | ` +
          `${summary.meanNiced} | ${summary.maxRss} |`,
      ]
    }),
    '',
    '## Checks',
    '',
    ...checks.map(
      (check) =>
        `- ${verdict(check.passed)}: \`${check.expression}\` (measured ${ms(check.actual)})`,
    ),
    '',
  ]
  return lines.join('\n')
}

function loadText(loads: LoadSample[]): string {
  if (loads.length === 0) return 'not sampled'
  const ones = loads.map((load) => load.one)
  const mean = ones.reduce((sum, value) => sum + value, 0) / ones.length
  return `mean ${mean.toFixed(2)}, max ${Math.max(...ones).toFixed(2)}`
}

function drainText(info: RunInfo): string {
  if (info.drainLimitSeconds === null) return 'not sampled (no database URL)'
  if (info.drainSeconds === null)
    return `did NOT drain within ${info.drainLimitSeconds} s`
  return `drained ${info.drainSeconds.toFixed(1)} s after the run (limit ${info.drainLimitSeconds} s)`
}

function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;')
}

function html(summaryMarkdown: string, figures: string[], passed: boolean): string {
  // The summary's Markdown tables rendered as HTML tables, the rest as paragraphs.
  const blocks: string[] = []
  let table: string[] = []
  const flush = () => {
    if (table.length === 0) return
    const [head, , ...body] = table.map((line) =>
      line
        .slice(1, -1)
        .split('|')
        .map((value) => escapeHtml(value.trim())),
    )
    blocks.push(
      `<table><thead><tr>${(head ?? []).map((value) => `<th>${value}</th>`).join('')}</tr></thead>` +
        `<tbody>${body.map((cells) => `<tr>${cells.map((value) => `<td>${value}</td>`).join('')}</tr>`).join('')}</tbody></table>`,
    )
    table = []
  }
  for (const line of summaryMarkdown.split('\n')) {
    if (line.startsWith('|')) {
      table.push(line)
      continue
    }
    flush()
    if (line.startsWith('# ')) blocks.push(`<h1>${escapeHtml(line.slice(2))}</h1>`)
    else if (line.startsWith('## ')) blocks.push(`<h2>${escapeHtml(line.slice(3))}</h2>`)
    else if (line.startsWith('- '))
      blocks.push(`<p class="item">${escapeHtml(line.slice(2))}</p>`)
    else if (line.trim() !== '') blocks.push(`<p>${escapeHtml(line)}</p>`)
  }
  flush()

  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Load test report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }
h1 { color: ${passed ? '#1a7f37' : '#cf222e'}; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
p.item { margin: 0.2em 0; }
figure { margin: 0; }
</style>
</head>
<body>
${blocks.join('\n')}
<h2>Charts</h2>
${figures.join('\n')}
</body>
</html>
`
}

/** Writes report.html and summary.md into the run's folder; says whether all checks held. */
export async function makeReport(dir: string): Promise<{ passed: boolean }> {
  const output: ArtilleryOutput = JSON.parse(
    await readFile(path.join(dir, 'artillery.json'), 'utf8'),
  )
  const samples: Samples = JSON.parse(
    await readFile(path.join(dir, 'samples.json'), 'utf8'),
  )
  const checks = await readChecks(output.aggregate)
  const rows = endpointRows(output.aggregate, checks)
  const drained =
    samples.info.drainLimitSeconds === null || samples.info.drainSeconds !== null
  const passed = checks.every((check) => check.passed) && drained

  const summary = markdown(
    samples.info,
    rows,
    checks,
    samples.usage,
    samples.loads,
    passed,
  )
  await writeFile(path.join(dir, 'summary.md'), summary)
  await writeFile(
    path.join(dir, 'report.html'),
    html(summary, charts(output, samples, checks), passed),
  )
  return { passed }
}

if (import.meta.main) {
  const dir = process.argv[2]
  if (!dir) {
    console.error('usage: node loadtest/report.ts <run folder>')
    process.exit(2)
  }
  const { passed } = await makeReport(path.resolve(dir))
  console.log(`${path.resolve(dir, 'report.html')} (${passed ? 'passed' : 'failed'})`)
}
