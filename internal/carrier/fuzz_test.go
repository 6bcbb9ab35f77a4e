package carrier

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/linkbeat/linkbeat/gen"
)

// FuzzDecodeEvent: no ring-buffer record, however mangled, panics the
// decoder, and a record it accepts is one it can name.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(encodeEvent(f, 123456789, 42, 7, true, gen.CarrierCarrierSourceCARRIER_SOURCE_FENTRY, 3, 2, "eth0"))
	f.Add(make([]byte, 10))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := DecodeEvent(raw)
		if err != nil {
			return
		}
		if len(raw) < 56 {
			t.Fatalf("a %d-byte record decoded: %+v", len(raw), ev)
		}
		if !ev.Source.IsBPF() {
			t.Fatalf("decoded an event of source %s from BPF", ev.Source)
		}
	})
}

// FuzzEventRoundTrip: a record laid out as the BPF program writes it
// decodes to the values written.
func FuzzEventRoundTrip(f *testing.F) {
	f.Add(uint64(123456789), uint64(42), uint32(7), true, uint8(gen.CarrierCarrierSourceCARRIER_SOURCE_FENTRY), uint32(3), uint32(2), "eth0")
	f.Add(uint64(1<<63), uint64(0), uint32(1<<31), false, uint8(gen.CarrierCarrierSourceCARRIER_SOURCE_KPROBE), uint32(0), ^uint32(0), "sixteen-chars-ab")
	f.Fuzz(func(t *testing.T, ts, seq uint64, ifindex uint32, up bool, source uint8, upCount, downCount uint32, name string) {
		raw := encodeEvent(t, ts, seq, ifindex, up, gen.CarrierCarrierSource(source), upCount, downCount, name)
		ev, err := DecodeEvent(raw)
		var want Source
		switch gen.CarrierCarrierSource(source) {
		case gen.CarrierCarrierSourceCARRIER_SOURCE_FENTRY:
			want = SourceFentry
		case gen.CarrierCarrierSourceCARRIER_SOURCE_KPROBE:
			want = SourceKprobe
		default:
			if err == nil {
				t.Fatalf("source %d decoded as %s", source, ev.Source)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// The kernel's name field is 16 bytes, NUL-terminated if shorter.
		wantName := name
		if len(wantName) > 16 {
			wantName = wantName[:16]
		}
		if i := bytes.IndexByte([]byte(wantName), 0); i >= 0 {
			wantName = wantName[:i]
		}
		w := Event{Time: time.Duration(ts), Seq: seq, Ifindex: int(ifindex), Ifname: wantName, Up: up, Source: want, UpCount: upCount, DownCount: downCount}
		if ev != w {
			t.Fatalf("decoded %+v, want %+v", ev, w)
		}
	})
}

func encodeEvent(t testing.TB, ts, seq uint64, ifindex uint32, up bool, src gen.CarrierCarrierSource, upCount, downCount uint32, name string) []byte {
	var raw gen.CarrierCarrierEvent
	raw.TsNs, raw.Seq, raw.Ifindex, raw.UpCount, raw.DownCount, raw.Source = ts, seq, ifindex, upCount, downCount, uint8(src)
	if up {
		raw.Up = 1
	}
	for i := 0; i < len(name) && i < len(raw.Ifname); i++ {
		raw.Ifname[i] = int8(name[i])
	}
	var buf bytes.Buffer
	if err := binary.Write(&buf, binary.NativeEndian, &raw); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
