package probe

import (
	"fmt"
	"os"
	"path/filepath"
)

// InspectBpffs says whether pinDir lies on a bpffs (its nearest existing
// ancestor is one) without mounting anything, unlike Bpffs: for
// `linkbeat doctor`, which only looks. Detail names the directory checked.
func InspectBpffs(pinDir string) Check {
	dir := filepath.Clean(pinDir)
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			break
		}
		dir = filepath.Dir(dir)
	}
	if fsMounted(dir, bpffsMagic) {
		return Check{Name: "bpffs", OK: true, Detail: dir + " is a bpffs"}
	}
	return Check{Name: "bpffs", Detail: fmt.Sprintf("%s is not on a bpffs (checked %s)", pinDir, dir)}
}
