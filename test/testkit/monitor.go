package testkit

// MonitorEvent is one line of `linkbeat monitor --json`.
type MonitorEvent struct {
	TimeNS    int64  `json:"time_ns"`
	Ifindex   int    `json:"ifindex"`
	Ifname    string `json:"ifname"`
	Carrier   string `json:"carrier"`
	Source    string `json:"source"`
	UpCount   uint64 `json:"up_count"`
	DownCount uint64 `json:"down_count"`
}
