package routes

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"
)

// state.encode writes, piece by piece, exactly what json.Marshal writes:
// an old daemon, or a newer one, reads the file either way.
func TestStateEncodeIsMarshal(t *testing.T) {
	b, err := os.ReadFile("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	// A link with nothing but a nexthop object, and a name JSON escapes.
	st.Links[linkID("a<b>&\"c", 9)] = &linkState{Ifname: "a<b>&\"c", Ifindex: 9, Since: time.Unix(5, 7).UTC(),
		Nexthops: []*nexthopEntry{{Nexthop: &Nexthop{ID: 4, Family: 2, Ifindex: 9, Gateway: ip("10.9.0.1")}}}}
	for name, s := range map[string]*state{"full": &st, "empty": {Version: stateVersion, Links: map[string]*linkState{}}} {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var got bytes.Buffer
		if err := s.encode(&got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: encode wrote\n%s\njson.Marshal\n%s", name, got.Bytes(), want)
		}
	}
}
