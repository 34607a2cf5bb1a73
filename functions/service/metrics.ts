/**
 * CloudWatch metrics as Embedded Metric Format: the JSON log line an event already writes also
 * carries the metric values and, under `_aws`, what CloudWatch should extract from them. No
 * API call, no extra line (docs/monitoring.md).
 */
export interface MetricsSettings {
  readonly namespace: string;
  /** The value of the `Stage` dimension every metric carries. */
  readonly stage: string;
}

export type Unit = "Count" | "Bytes" | "Milliseconds";

export interface Metric {
  readonly name: string;
  readonly value: number;
  readonly unit: Unit;
  /** Extra dimensions besides `Stage`, with their values. */
  readonly dimensions?: Readonly<Record<string, string>>;
}

/**
 * The fields to add to a log line so that CloudWatch extracts `metrics` from it; none when
 * metrics are off. Metrics with the same extra dimensions share a directive.
 */
export function emfFields(
  settings: MetricsSettings | undefined,
  metrics: readonly Metric[],
  timestamp: number,
): Record<string, unknown> {
  if (settings === undefined || metrics.length === 0) return {};
  const groups = new Map<string, { dimensions: string[]; metrics: Metric[] }>();
  const fields: Record<string, unknown> = { Stage: settings.stage };
  for (const metric of metrics) {
    const extra = Object.keys(metric.dimensions ?? {}).sort();
    const id = extra.join(",");
    const group = groups.get(id) ?? { dimensions: ["Stage", ...extra], metrics: [] };
    group.metrics.push(metric);
    groups.set(id, group);
    Object.assign(fields, metric.dimensions);
    fields[metric.name] = metric.value;
  }
  fields._aws = {
    Timestamp: timestamp,
    CloudWatchMetrics: [...groups.values()].map((group) => ({
      Namespace: settings.namespace,
      Dimensions: [group.dimensions],
      Metrics: group.metrics.map((metric) => ({ Name: metric.name, Unit: metric.unit })),
    })),
  };
  return fields;
}
