package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/linkbeat/linkbeat/test/bench"
	"github.com/linkbeat/linkbeat/test/testkit"
)

// iperfRun is one iperf3 test's figures.
type iperfRun struct {
	bitsPerSecond float64 // received
	bytes         float64 // received
	seconds       float64
	cpu           time.Duration // client and server, user and system
}

type iperfJSON struct {
	End struct {
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs one iperf3 test from ns a to b's 10.9.0.2. udp64 sends
// 64-byte UDP datagrams as fast as one sender thread can.
func iperf(ctx context.Context, a, b *namespace, secs int, udp64 bool) (iperfRun, error) {
	var r iperfRun
	srv := exec.CommandContext(ctx, "ip", "netns", "exec", b.name, "iperf3", "-s", "-1", "-p", "5201")
	var srvOut testkit.Buffer
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := srv.Start(); err != nil {
		return r, fmt.Errorf("iperf3 server: %w", err)
	}
	args := []string{"netns", "exec", a.name, "iperf3", "-c", "10.9.0.2", "-p", "5201", "-t", strconv.Itoa(secs), "-J"}
	if udp64 {
		args = append(args, "-u", "-b", "0", "-l", "64")
	}
	var cli *exec.Cmd
	var res iperfJSON
	var err error
	for try := 0; try < 40; try++ { // until the server listens
		cli = exec.CommandContext(ctx, "ip", args...)
		var out []byte
		if out, err = cli.Output(); err == nil {
			res = iperfJSON{}
			if err = json.Unmarshal(out, &res); err != nil {
				err = fmt.Errorf("iperf3 JSON: %w: %s", err, out)
			} else if res.Error != "" {
				err = fmt.Errorf("iperf3 client: %s", res.Error) // iperf3 exits 0 even then
			}
		}
		if err == nil || !strings.Contains(res.Error, "unable to connect") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		srv.Process.Kill()
		srv.Wait()
		return r, err
	}
	if err := srv.Wait(); err != nil {
		return r, fmt.Errorf("iperf3 server: %w: %s", err, srvOut.String())
	}
	s := res.End.SumReceived
	r = iperfRun{bitsPerSecond: s.BitsPerSecond, bytes: s.Bytes, seconds: s.Seconds}
	for _, c := range []*exec.Cmd{cli, srv} {
		r.cpu += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	return r, nil
}

// countedPackets is the packets linkbeat's TC programs counted on dev,
// from its pinned map: proof the programs sat in the measured path.
func countedPackets(e *env, d *daemon, dev string) (uint64, error) {
	out, err := d.ns.run(e.linkbeat, "stats", "--json", "--bpffs-dir", d.pinDir)
	if err != nil {
		return 0, err
	}
	var rows []struct {
		Ifname    string `json:"ifname"`
		RxPackets uint64 `json:"rx_packets"`
		TxPackets uint64 `json:"tx_packets"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return 0, fmt.Errorf("linkbeat stats: %w: %s", err, out)
	}
	for _, r := range rows {
		if r.Ifname == dev {
			return r.RxPackets + r.TxPackets, nil
		}
	}
	return 0, nil
}

func datapathScenarios(ctx context.Context, log *slog.Logger, e *env, nss *namespaces) ([]bench.Scenario, error) {
	pairs, secs := 8, 5
	if e.quick {
		pairs, secs = 2, 1
	}
	a, err := nss.add()
	if err != nil {
		return nil, err
	}
	b, err := nss.add()
	if err != nil {
		return nil, err
	}
	if err := nss.veth(a, "va", b, "vb"); err != nil {
		return nil, err
	}
	err = a.ipAll(
		[]string{"addr", "add", "10.9.0.1/24", "dev", "va"},
		[]string{"link", "set", "va", "up"},
	)
	if err != nil {
		return nil, err
	}
	if err := b.ipAll([]string{"addr", "add", "10.9.0.2/24", "dev", "vb"}, []string{"link", "set", "vb", "up"}); err != nil {
		return nil, err
	}
	if err := a.waitCarrier(ctx, "va", true, 5*time.Second); err != nil {
		return nil, err
	}

	const without, with = "without linkbeat", "with linkbeat (TC + tracepoints)"
	tcp := bench.Scenario{
		ID: "datapath-tcp", Title: "Datapath overhead: TCP throughput across a veth pair (iperf3, one stream)",
		Unit: "Gbit/s", LowerIsBetter: false, Anchor: without,
		Goal:  "with linkbeat >= 97% of the throughput without (<= 3% loss)",
		Goals: []bench.Goal{{Text: "with p50 >= 0.97 × without p50", Contender: with, Stat: "p50", Op: ">=", Factor: 0.97}},
	}
	udp := bench.Scenario{
		ID: "datapath-udp64", Title: "Datapath overhead: 64-byte UDP packets received per second across a veth pair (iperf3 -u -b 0 -l 64)",
		Unit: "kpps", LowerIsBetter: false, Anchor: without,
		Goal:  "with linkbeat >= 97% of the packet rate without (<= 3% loss)",
		Goals: []bench.Goal{{Text: "with p50 >= 0.97 × without p50", Contender: with, Stat: "p50", Op: ">=", Factor: 0.97}},
	}
	for _, s := range []*bench.Scenario{&tcp, &udp} {
		s.Contenders = []bench.Contender{{Name: without, Figures: map[string]float64{}}, {Name: with, Figures: map[string]float64{}}}
	}
	type acc struct{ cpu, bytes, pkts float64 }
	cost := map[string]*[2]acc{without: {}, with: {}}
	for i := 0; i < pairs; i++ {
		for _, c := range []string{without, with} {
			var d *daemon
			if c == with {
				if d, err = startLinkbeat(ctx, e, a, "--interfaces", "va"); err != nil {
					return nil, err
				}
			}
			for k, s := range []*bench.Scenario{&tcp, &udp} {
				r, err := iperf(ctx, a, b, secs, k == 1)
				if err != nil {
					if d != nil {
						d.stop()
					}
					return nil, err
				}
				ct := s.Contender(c)
				if k == 0 {
					ct.Samples = append(ct.Samples, r.bitsPerSecond/1e9)
				} else {
					ct.Samples = append(ct.Samples, r.bytes/64/r.seconds/1e3)
				}
				cost[c][k].cpu += r.cpu.Seconds()
				cost[c][k].bytes += r.bytes
				cost[c][k].pkts += r.bytes / 64
			}
			if d != nil {
				n, err := countedPackets(e, d, "va")
				err = errors.Join(err, d.stop())
				if err != nil {
					return nil, err
				}
				if n == 0 {
					return nil, fmt.Errorf("linkbeat's TC programs counted no packets on va: not in the path")
				}
			}
			log.Info("datapath run", "pair", i, "contender", c)
		}
	}
	for _, c := range []string{without, with} {
		tcp.Contender(c).Figures["cpu_s_per_gb"] = cost[c][0].cpu / (cost[c][0].bytes / 1e9)
		udp.Contender(c).Figures["cpu_ns_per_pkt"] = cost[c][1].cpu * 1e9 / cost[c][1].pkts
	}
	note := fmt.Sprintf("%d alternating pairs of %d s runs (without, with, without, with, ...) so drift cancels; linkbeat runs with --interfaces va in the sender's namespace, started before and stopped and cleaned up after each of its runs, and its own counters (linkbeat stats) show its TC programs counted the traffic of its runs; `linkbeat cleanup` detaches them after each. The tracepoints are host-wide.", pairs, secs)
	cpuNote := "CPU cost: user+system time of the iperf3 client and server (rusage), which includes the veth transmit and the receive softirq run in their context, divided by the data received. perf is not available here, so this is the per-packet cost measure; it is noisy on a shared 2-core machine."
	tcp.Notes = []string{note, cpuNote}
	udp.Notes = []string{note, cpuNote, "Received packets per second; the single sender thread is the bottleneck, so this measures per-packet cost on the path rather than link capacity."}
	return []bench.Scenario{tcp, udp}, nil
}
