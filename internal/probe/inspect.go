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
	dir := nearestExisting(pinDir)
	if fsMounted(dir, bpffsMagic) {
		return Check{Name: "bpffs", OK: true, Detail: dir + " is a bpffs"}
	}
	return Check{Name: "bpffs", Detail: fmt.Sprintf("%s is not on a bpffs (checked %s)", pinDir, dir)}
}

// nearestExisting is path itself if it exists, else its nearest existing
// ancestor: the filesystem a directory not yet made would be created on.
func nearestExisting(path string) string {
	dir := filepath.Clean(path)
	for {
		if _, err := os.Stat(dir); err == nil || dir == "/" {
			return dir
		}
		dir = filepath.Dir(dir)
	}
}
