// The linkbeat monitoring mixin: alerts (alerts.libsonnet) and the Grafana
// dashboard (deploy/grafana/linkbeat.json), configured by config.libsonnet.
// `make mixin` writes deploy/prometheus/rules.yml from it.
(import 'config.libsonnet') +
(import 'alerts.libsonnet') +
{
  grafanaDashboards+:: {
    'linkbeat.json': (import '../grafana/linkbeat.json'),
  },
}
