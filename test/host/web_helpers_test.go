package host

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/linkbeat/linkbeat/test/testkit"
)

// dial connects from inside ns: the socket is made on a thread switched
// into ns, which is thrown away afterwards.
func (ns netns) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return testkit.Dialer(string(ns), &net.Dialer{})(ctx, network, addr)
}

// client is an HTTP client whose connections start inside ns.
func (ns netns) client(tlsConfig *tls.Config) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: ns.dial, TLSClientConfig: tlsConfig, DisableKeepAlives: true}}
}

// get fetches a URL from inside ns and returns status and body.
func (ns netns) get(t *testing.T, c *http.Client, url string, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches linkbeat's metrics from inside ns.
func (ns netns) scrape(t *testing.T, addr string) string {
	t.Helper()
	code, body := ns.get(t, ns.client(nil), "http://"+addr+"/metrics", "", "")
	if code != http.StatusOK {
		t.Fatalf("scrape %s: HTTP %d\n%s", addr, code, body)
	}
	return body
}

// sample returns the value of one series in an exposition, by its exact
// name and labels as printed, e.g. `x_total{a="b"}`.
func sample(t *testing.T, exposition, series string) (float64, bool) {
	t.Helper()
	v, ok, err := testkit.Sample(exposition, series)
	if err != nil {
		t.Fatal(err)
	}
	return v, ok
}

// promQuery runs an instant query against a Prometheus inside ns and
// returns the value of each result, by its label set printed as JSON.
func (ns netns) promQuery(t *testing.T, base, query string) []string {
	t.Helper()
	code, body := ns.get(t, ns.client(nil), base+"/api/v1/query?query="+url.QueryEscape(query), "", "")
	if code != http.StatusOK {
		t.Fatalf("query %s: HTTP %d: %s", query, code, body)
	}
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v: %s", query, err, body)
	}
	var out []string
	for _, res := range r.Data.Result {
		if len(res.Value) == 2 {
			out = append(out, fmt.Sprint(res.Value[1]))
		}
	}
	return out
}

// tcxLink is one tcx link of linkbeat's on an interface.
type tcxLink struct {
	ID, Prog uint32
}

// tcxLinks lists, by program name, linkbeat's programs attached with tcx
// to an interface of ns: asked of the kernel from inside ns
// (BPF_PROG_QUERY), so no other namespace's interfaces count.
func tcxLinks(t *testing.T, ns netns, ifindex int) map[string][]tcxLink {
	t.Helper()
	out := map[string][]tcxLink{}
	ns.do(t, func() {
		for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			res, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: at})
			if err != nil {
				continue // nothing attached with tcx
			}
			for _, p := range res.Programs {
				prog, err := ebpf.NewProgramFromID(p.ID)
				if err != nil {
					continue
				}
				pi, err := prog.Info()
				prog.Close()
				if err != nil || (pi.Name != "tc_ingress" && pi.Name != "tc_egress") {
					continue
				}
				lid, _ := p.LinkID()
				out[pi.Name] = append(out[pi.Name], tcxLink{ID: uint32(lid), Prog: uint32(p.ID)})
			}
		}
	})
	return out
}

// tcCount counts linkbeat's programs on one hook (ingress or egress) of a
// device: tcx links or clsact filters, whichever mech uses.
func tcCount(t *testing.T, ns netns, dev string, ifindex int, mech, hook string) int {
	t.Helper()
	if mech == "clsact" {
		out, err := exec.Command("ip", "netns", "exec", string(ns), "tc", "filter", "show", "dev", dev, hook).CombinedOutput()
		if err != nil {
			return 0 // no clsact qdisc, so no filter
		}
		return strings.Count(string(out), "linkbeat_"+hook)
	}
	return len(tcxLinks(t, ns, ifindex)["tc_"+hook])
}
