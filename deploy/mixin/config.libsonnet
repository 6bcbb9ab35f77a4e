// Settings of the linkbeat mixin. Override them as with node-mixin:
//   (import 'mixin.libsonnet') + { _config+:: { linkbeatSelector: 'job="lb"' } }
{
  _config+:: {
    // Selects linkbeat's series: every alert matches it, none names a job.
    linkbeatSelector: 'job="linkbeat"',
    // Labels that tell one linkbeat from another, kept by every aggregation.
    instanceLabels: 'job, instance',
    // Where each alert's runbook is: %s is the alert name in lower case,
    // the anchor of its heading in docs/runbooks.md.
    runbookURLPattern: 'https://github.com/linkbeat/linkbeat/blob/main/docs/runbooks.md#%s',
    // Carrier up but nothing received for this long.
    rxSilentFor: '10m',
    // Window of the transmit error and timeout alerts.
    txWindow: '10m',
  },
}
