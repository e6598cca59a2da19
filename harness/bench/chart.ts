/**
 * One chart per suite, drawn by Vega-Lite (compiled to Vega, rendered to SVG
 * headless) and rasterised to PNG by resvg: a panel per metric, a bar per
 * kernel and variant at the median, a rule from min to max.
 */
import type { Summary } from './stats';

// vega and vega-lite are ES modules only; TypeScript's CommonJS output
// would turn a plain import() into require(), which cannot load them.
const importEsm = new Function('specifier', 'return import(specifier)') as (specifier: string) => Promise<any>;

/**
 * The Vega-Lite specification of one suite's chart. `caveat`: true for a
 * busy machine, or the words that say why else the figures are not clean.
 */
export function chartSpec(suite: string, summaries: readonly Summary[], caveat: boolean | string): Record<string, unknown> {
  const values = summaries
    .filter((s) => s.suite === suite)
    .map((s) => ({ metric: `${s.metric} (${s.unit}, ${s.better} is better)`, kernel: s.kernel, variant: s.variant, median: s.median, min: s.min, max: s.max }));
  const x = { field: 'kernel', type: 'nominal', title: null, sort: null };
  const xOffset = { field: 'variant', sort: null };
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: `p2pdma bench: ${suite}`, subtitle: caveat === true ? 'BUSY MACHINE: not clean figures' : caveat || 'median, bars from min to max' },
    data: { values },
    facet: { field: 'metric', type: 'nominal', title: null, sort: null },
    columns: 3,
    spec: {
      width: 220,
      height: 160,
      layer: [
        {
          mark: 'bar',
          encoding: {
            x,
            xOffset,
            y: { field: 'median', type: 'quantitative', title: 'median' },
            color: { field: 'variant', type: 'nominal', sort: null },
            tooltip: [{ field: 'variant' }, { field: 'median' }, { field: 'min' }, { field: 'max' }],
          },
        },
        { mark: { type: 'rule', color: 'black' }, encoding: { x, xOffset, y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } } },
      ],
    },
    resolve: { scale: { y: 'independent' } },
  };
}

export async function renderSvg(spec: Record<string, unknown>): Promise<string> {
  const [vega, vl] = await Promise.all([importEsm('vega'), importEsm('vega-lite')]);
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

/** The SVG as PNG, or null when @resvg/resvg-js (an optional native package) does not load here. */
export async function renderPng(svg: string): Promise<Buffer | null> {
  let Resvg;
  try {
    ({ Resvg } = await importEsm('@resvg/resvg-js'));
  } catch {
    return null;
  }
  return Buffer.from(new Resvg(svg, { font: { loadSystemFonts: true }, fitTo: { mode: 'zoom', value: 2 } }).render().asPng());
}
