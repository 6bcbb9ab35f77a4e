// linkbeat's alerts. Every expression selects with linkbeatSelector and
// every alert links its runbook (docs/runbooks.md).
{
  local withRunbook(c) = function(rule) rule {
    annotations+: { runbook_url: c.runbookURLPattern % std.asciiLower(rule.alert) },
  },

  prometheusAlerts+:: {
    local c = $._config,
    groups+: [{
      name: 'linkbeat',
      rules: std.map(withRunbook(c), [
        {
          alert: 'LinkbeatDown',
          expr: 'up{%(linkbeatSelector)s} == 0' % c,
          'for': '5m',
          labels: { severity: 'critical' },
          annotations: {
            summary: 'linkbeat on {{ $labels.instance }} is not being scraped',
            description: "Without the daemon, a dead link's routes stay in place and bonds fail over only at miimon's pace. Check `systemctl status linkbeat` or the pod's logs.",
          },
        },
        {
          // Slaves the bond itself reports up (MII status), counted per
          // bond, for bonds that have more than one slave.
          alert: 'LinkbeatBondOnLastSlave',
          expr: |||
            count by (%(instanceLabels)s, bond) (linkbeat_bond_slave_mii_status{%(linkbeatSelector)s, status="up"} == 1) == 1
            and on (%(instanceLabels)s, bond)
            count by (%(instanceLabels)s, bond) (linkbeat_bond_slave_mii_status{%(linkbeatSelector)s, status="up"}) > 1
          ||| % c,
          'for': '2m',
          labels: { severity: 'warning' },
          annotations: {
            summary: 'bond {{ $labels.bond }} on {{ $labels.instance }} runs on its last live slave',
            description: 'One more link failure takes the bond down. `linkbeat status` shows which slaves are down and since when.',
          },
        },
        {
          alert: 'LinkbeatBondNoLiveSlave',
          expr: |||
            count by (%(instanceLabels)s, bond) (linkbeat_bond_slave_mii_status{%(linkbeatSelector)s, status="up"})
            unless on (%(instanceLabels)s, bond)
            count by (%(instanceLabels)s, bond) (linkbeat_bond_slave_mii_status{%(linkbeatSelector)s, status="up"} == 1)
          ||| % c,
          'for': '1m',
          labels: { severity: 'critical' },
          annotations: {
            summary: 'bond {{ $labels.bond }} on {{ $labels.instance }} has no live slave',
            description: "Every slave of the bond is down in the bond's own view.",
          },
        },
        {
          alert: 'LinkbeatInterfaceFlapping',
          expr: 'sum by (%(instanceLabels)s, interface) (increase(linkbeat_interface_carrier_changes_total{%(linkbeatSelector)s}[15m])) >= 6' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $labels.interface }} on {{ $labels.instance }} is flapping',
            description: '{{ $value | humanize }} carrier changes in 15 minutes: check the cable, optic and switch port; `dampening` in the config holds such a link down.',
          },
        },
        {
          // Carrier says the link is fine, but nothing arrives: a dead
          // switch port behind a live PHY, a wrong VLAN, a one-way optic.
          // Carrier-based failover cannot see it; path monitoring can.
          alert: 'LinkbeatRxSilent',
          expr: |||
            rate(linkbeat_interface_receive_packets_total{%(linkbeatSelector)s}[%(rxSilentFor)s]) == 0
            and on (%(instanceLabels)s, interface)
            linkbeat_interface_carrier{%(linkbeatSelector)s} == 1
          ||| % c,
          'for': c.rxSilentFor,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $labels.interface }} on {{ $labels.instance }} has carrier but receives nothing',
            description: 'No packet received for %s while the link reports carrier: the path behind the port is likely dead, and carrier-based failover will not react.' % c.rxSilentFor,
          },
        },
        {
          alert: 'LinkbeatTransmitErrors',
          expr: 'sum by (%(instanceLabels)s, interface) (increase(linkbeat_interface_transmit_errors_total{%(linkbeatSelector)s}[%(txWindow)s])) > 0' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $labels.interface }} on {{ $labels.instance }} fails to transmit',
            description: '{{ $value | humanize }} transmissions the driver refused in %s (net_dev_xmit with an error).' % c.txWindow,
          },
        },
        {
          alert: 'LinkbeatTransmitTimeouts',
          expr: 'sum by (%(instanceLabels)s, interface) (increase(linkbeat_interface_transmit_timeouts_total{%(linkbeatSelector)s}[%(txWindow)s])) > 0' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'transmit queue of {{ $labels.interface }} on {{ $labels.instance }} timed out',
            description: '{{ $value | humanize }} transmit timeouts in %s: the NIC stopped sending and the driver reset it (net_dev_xmit_timeout).' % c.txWindow,
          },
        },
        {
          alert: 'LinkbeatScriptFailures',
          expr: 'sum by (%(instanceLabels)s, interface, action, result) (increase(linkbeat_script_runs_total{%(linkbeatSelector)s, result!="success"}[15m])) > 0' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: '{{ $labels.action }} script for {{ $labels.interface }} on {{ $labels.instance }}: {{ $labels.result }}',
            description: "An action script failed, timed out or could not start in the last 15 minutes; the daemon's log has its output.",
          },
        },
        {
          // netlink is the fallback: BPF (fentry or kprobe) was refused, so
          // a plain NIC's carrier loss can reach linkbeat up to a second
          // late. Where that is expected, narrow linkbeatSelector.
          alert: 'LinkbeatCarrierSourceNetlinkOnly',
          expr: 'linkbeat_carrier_source_info{%(linkbeatSelector)s, source="netlink"} == 1' % c,
          'for': '15m',
          labels: { severity: 'warning' },
          annotations: {
            summary: 'linkbeat on {{ $labels.instance }} sees carrier only through netlink',
            description: 'The BPF carrier paths were refused; `linkbeat features` says why and how to get them.',
          },
        },
        {
          alert: 'LinkbeatRingbufDrops',
          expr: 'increase(linkbeat_ringbuf_drops_total{%(linkbeatSelector)s}[10m]) > 0' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'linkbeat on {{ $labels.instance }} lost carrier events in the BPF ring buffer',
            description: '{{ $value | humanize }} events dropped in 10 minutes; each drop costs a full netlink resync (linkbeat_resyncs_total{reason="ringbuf_drop"}).',
          },
        },
        {
          alert: 'LinkbeatFailoverDeclined',
          expr: 'sum by (%(instanceLabels)s, bond, reason) (increase(linkbeat_bond_failovers_declined_total{%(linkbeatSelector)s}[15m])) > 0' % c,
          labels: { severity: 'warning' },
          annotations: {
            summary: 'linkbeat left a switch of bond {{ $labels.bond }} on {{ $labels.instance }} to the bond ({{ $labels.reason }})',
            description: 'linkbeat wanted to make a live slave active and the kernel would have refused (no live slave, or no current active slave).',
          },
        },
        {
          alert: 'LinkbeatCollectorFailing',
          expr: 'linkbeat_scrape_collector_success{%(linkbeatSelector)s} == 0' % c,
          'for': '10m',
          labels: { severity: 'warning' },
          annotations: {
            summary: "linkbeat's {{ $labels.collector }} collector on {{ $labels.instance }} is failing",
            description: 'Its series are missing from the scrape; the daemon logs the reason ("metrics collector failed").',
          },
        },
        {
          alert: 'LinkbeatConfigReloadFailed',
          expr: 'linkbeat_config_last_reload_successful{%(linkbeatSelector)s} == 0' % c,
          'for': '5m',
          labels: { severity: 'warning' },
          annotations: {
            summary: 'linkbeat on {{ $labels.instance }} refused its new config',
            description: 'The last reload (SIGHUP) failed validation; the previous config is still in force. `linkbeat config check FILE` says what is wrong.',
          },
        },
        {
          alert: 'LinkbeatRoutesWithdrawn',
          expr: 'linkbeat_routes_withdrawn{%(linkbeatSelector)s} > 0' % c,
          'for': '15m',
          labels: { severity: 'info' },
          annotations: {
            summary: '{{ $value }} routes of {{ $labels.interface }} on {{ $labels.instance }} withdrawn for 15 minutes',
            description: 'The link lost carrier and has not come back; its routes return when it does.',
          },
        },
      ]),
    }],
  },
}
