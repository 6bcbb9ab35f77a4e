package carrier

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/gen"
)

func TestDecodeEvent(t *testing.T) {
	var raw gen.CarrierCarrierEvent
	raw.TsNs = 123456789
	raw.Seq = 42
	raw.Ifindex = 7
	raw.UpCount = 3
	raw.DownCount = 2
	raw.Up = 1
	raw.Source = uint8(gen.CarrierCarrierSourceCARRIER_SOURCE_FENTRY)
	for i, c := range "eth0" {
		raw.Ifname[i] = int8(c)
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &raw); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 56 {
		t.Fatalf("event is %d bytes, C struct is 56", buf.Len())
	}
	ev, err := DecodeEvent(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := Event{Time: 123456789 * time.Nanosecond, Ifindex: 7, Ifname: "eth0", Up: true, Source: SourceFentry, UpCount: 3, DownCount: 2, Seq: 42}
	if ev != want {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
}

func TestDecodeEventRejectsShortAndUnknownSource(t *testing.T) {
	if _, err := DecodeEvent(make([]byte, 10)); err == nil {
		t.Fatal("short record decoded")
	}
	raw := make([]byte, 56)
	raw[33] = 9 // source
	if _, err := DecodeEvent(raw); err == nil {
		t.Fatal("unknown source decoded")
	}
}
