package platformsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The real platform never forgets a school's credentials; a simulator that did would restart
// with other credentials than the partner server stored (after a RESET, a reactivation, a
// reactivation without webhook), and every sign-in would fail. With Config.StateFile the
// simulator keeps, per school, what its lifecycle changed: the app's status and the current
// secret and password. SeedDemo restores the demo schools from it.

// savedTenant is one school's entry in the state file.
type savedTenant struct {
	Status   string `json:"status"`
	Secret   string `json:"secret"`
	Password string `json:"password"`
}

// savedState is the state file: schools by tenant id.
type savedState struct {
	Tenants map[string]savedTenant `json:"tenants"`
}

// loadState reads the state file; a missing file is an empty state. A file that does not parse
// is an error: starting afresh would silently bring back the credentials it replaced.
func loadState(path string) (map[string]savedTenant, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]savedTenant{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("platformsim: read state file: %w", err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("platformsim: state file %s: %w (delete it to start from the demo credentials)", path, err)
	}
	for id, t := range st.Tenants {
		if _, known := statusText[t.Status]; !known || t.Secret == "" || t.Password == "" {
			return nil, fmt.Errorf("platformsim: state file %s: school %s: incomplete entry (delete the file to start from the demo credentials)", path, id)
		}
	}
	if st.Tenants == nil {
		st.Tenants = map[string]savedTenant{}
	}
	return st.Tenants, nil
}

// saveState writes every school's status and credentials to the state file, atomically (a
// temporary file renamed over it), mode 0600: it holds secrets. Writes are serialised, each
// with a snapshot taken when it starts, so the file ends with the newest state. A failure is
// logged: the simulator keeps serving, it only forgets more on its next start.
func (s *Sim) saveState() {
	if s.stateFile == "" {
		return
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	st := savedState{Tenants: map[string]savedTenant{}}
	s.mu.Lock()
	for id, t := range s.tenants {
		st.Tenants[id] = savedTenant{Status: t.status, Secret: t.secret, Password: t.password}
	}
	s.mu.Unlock()
	if err := writeFileAtomic(s.stateFile, st); err != nil {
		s.log.Error("platformsim: save state (a restart will forget the latest credentials)", "file", s.stateFile, "err", err)
	}
}

func writeFileAtomic(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename there is nothing to remove
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
